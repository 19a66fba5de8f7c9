"""Results folders (resumable CSVs), per-experiment summaries and figures, and ``reproduce``.

A :class:`ResultFolder` owns one experiment's CSV and ``config.json``: it drops a partly
written unit left by a killed run, refuses to resume with different settings, appends
each finished unit at once, and records the environment. ``finalize_*`` (in
``_summaries``) turn a finished table into figures, derived tables and a dict of key
numbers; :func:`reproduce` runs the radius sweep and every experiment into one folder and
writes ``report.md``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .._names import EXPERIMENTS
from .._results_io import (
    append_rows,
    changed_settings,
    environment,
    read_config,
    read_written_rows,
    remove_rows,
    write_json,
    write_rows,
)
from ._summaries import (
    finalize_decompose,
    finalize_select,
    finalize_subspace_train,
    finalize_sweep,
    finalize_trajectory,
    markdown_table,
)

__all__ = ["ResultFolder", "build_model", "split_dataset", "finalize_subspace_train",
           "finalize_select", "finalize_trajectory", "finalize_decompose", "finalize_sweep",
           "reproduce", "markdown_table", "EXPERIMENTS"]



class ResultFolder:
    """One experiment's output folder: ``<name>.csv`` of raw rows and ``config.json``.

    Parameters
    ----------
    out : path
        Existing folder (see ``goldisk.cli._common.prepare_output``).
    name : str
        Stem of the CSV (``<name>.csv``).
    columns : list of str, optional
        Fixed column order of the CSV (else taken from the first rows written).
    config : dict
        Settings; on ``resume`` every one of them must equal the stored one, except the
        options that only say how the run executes (``goldisk._results_io.EXECUTION_ONLY``),
        or only the ``compare`` keys when those are given.
    resume : bool
        Keep complete units already in the CSV (``done``); otherwise start afresh.
    """

    def __init__(self, out, name: str, columns=None, config=None, resume: bool = False,
                 device: str = "cpu", compare=None):
        self.out = Path(out)
        self.csv = self.out / f"{name}.csv"
        self.columns = None if columns is None else list(columns)
        self.config = dict(config or {})
        self.device = device
        cfg_path = self.out / "config.json"
        self.previous_seconds = 0.0
        if resume and cfg_path.exists():
            try:
                old = read_config(cfg_path)
            except Exception as exc:  # CLIError: a damaged file, named
                raise ValueError(str(exc)) from None
            self.previous_seconds = float(old.get("seconds_total", old.get("seconds", 0.0)))
            if compare is None:
                changed = changed_settings(old, self.config)
            else:
                changed = [k for k in compare if old.get(k) != self.config.get(k)]
            if changed:
                raise ValueError(f"--resume with different settings ({', '.join(changed)}); "
                                 "use the original options or --force")
        previous = self._complete_rows() if resume else pd.DataFrame()
        self.done = set(previous["unit"].astype(str)) if not previous.empty else set()
        if not previous.empty:
            if self.columns is None:
                self.columns = list(previous.columns)
            write_rows(self.csv, previous)  # verified rows only, with their digests
        else:
            remove_rows(self.csv)
        self._start = time.perf_counter()
        write_json(cfg_path, {**self.config, "environment": environment(device)})

    def _complete_rows(self) -> pd.DataFrame:
        df = read_written_rows(self.csv)
        if df.empty or "unit" not in df or "unit_rows" not in df:
            return pd.DataFrame()
        df["unit"] = df["unit"].astype(str)
        counts = df.groupby("unit")["unit"].transform("size")
        return df[counts == df["unit_rows"]].reset_index(drop=True)

    def save(self, rows: list[dict]) -> None:
        """Append one finished unit's rows (one write, flushed)."""
        if self.columns is None:
            self.columns = list(rows[0].keys())
        append_rows(self.csv, rows, self.columns)

    def read(self) -> pd.DataFrame:
        """The whole CSV (complete units only)."""
        return self._complete_rows()

    def finish(self, **extra) -> float:
        """Rewrite ``config.json`` with the elapsed seconds (``seconds`` of this call,
        ``seconds_total`` over resumed calls), the row count and ``extra``."""
        seconds = time.perf_counter() - self._start
        rows = len(self.read())
        write_json(self.out / "config.json", {
            **self.config, "environment": environment(self.device), "seconds": seconds,
            "seconds_total": self.previous_seconds + seconds, "rows": rows, **extra})
        return seconds


def build_model(name: str, n_features: int, n_classes: int, hidden=(32, 32),
                activation: str = "relu", bias: bool = True):
    """``goldisk.models.make_model`` with the MLP widths only passed to MLPs."""
    from ..models import make_model

    kwargs = {"activation": activation, "bias": bias}
    if str(name).lower() == "mlp":
        kwargs["hidden"] = tuple(int(h) for h in hidden)
    return make_model(name, n_features, n_classes, **kwargs)


def split_dataset(ds, test_size: float = 0.25, random_state=0):
    """Stratified train/validation split of a goldisk Dataset (flattened features)."""
    train, val = ds.split(test_size=test_size, random_state=random_state)
    return train, val


# ---------------------------------------------------------------- reproduce
def reproduce(out, *, dataset: str = "digits", data_root=None, download: bool = False,
              model: str = "mlp", hidden=(32, 32), seed: int = 0, device: str = "cpu",
              max_samples: int | None = None, experiments=EXPERIMENTS, quick: bool = False,
              resume: bool = False, progress: bool = True,
              data_kwargs: dict | None = None) -> pd.DataFrame:
    """Run the radius sweep and every experiment at the default small scale into ``out``.

    Each experiment gets a sub-folder with its CSV, figures and ``config.json``; then
    ``report.md`` collects the figures and the key numbers. ``quick=True`` shrinks every
    experiment to a smoke test (seconds). ``data_kwargs`` go to ``load_dataset`` (e.g.
    ``{"preprocess": "unit"}`` for mnist5k, ``{"path": "mine.npz"}`` for "file") and are
    part of the settings a resume must match. Returns a table of (experiment, seconds, rows).
    """
    from ..datasets import load_dataset
    from ..sweep import radius_sweep
    from ._decompose import DECOMPOSE_COLUMNS, decompose
    from ._select import SELECT_COLUMNS, select
    from ._subspace_train import SUBSPACE_COLUMNS, subspace_train
    from ._trajectory import TRAJECTORY_COLUMNS, trajectory

    bad = [e for e in experiments if e not in EXPERIMENTS]
    if bad:
        raise ValueError(f"unknown experiments {bad}; valid: {', '.join(EXPERIMENTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = ({"root": data_root, "download": download}
              if dataset in ("mnist", "fashion-mnist", "cifar10") else {})
    ds = load_dataset(dataset, random_state=seed, **kwargs, **(data_kwargs or {}))
    if max_samples is not None:
        ds.X, ds.y = ds.X[:max_samples], ds.y[:max_samples]
    train_ds, val_ds = split_dataset(ds, random_state=seed)
    nf = int(np.prod(ds.X.shape[1:]))
    common = {"dataset": dataset, "model": model, "hidden": list(hidden), "seed": seed,
              "max_samples": max_samples, "quick": quick}
    if data_kwargs:
        common["data"] = {k: str(v) for k, v in data_kwargs.items()}
    Xt, yt, Xv, yv = train_ds.X, train_ds.y, val_ds.X, val_ds.y
    summaries, timing = {}, []

    def folder(name, csv, columns, extra=None):
        sub = out / name
        sub.mkdir(exist_ok=True)
        return ResultFolder(sub, csv, columns, {"command": f"reproduce/{name}", **common,
                                                **(extra or {})},
                            resume=resume, device=device)

    def net(bias=True):
        return build_model(model, nf, ds.n_classes, hidden, "relu", bias)

    q = quick
    tag = f"{dataset}, {model} {','.join(map(str, hidden)) if model == 'mlp' else ''}"
    for name in experiments:
        start = time.perf_counter()
        if name == "sweep":
            f = folder(name, "sweep", None)
            dims = (5, 10) if q else (10, 50, 100)
            radii = [0.1, 1.0, 10.0] if q else list(10 ** (np.linspace(-4, 4, 25) / 2))
            done = {tuple(int(v) for v in u.split("/")) for u in f.done}

            def save(rows, f=f):
                uid = f"{rows[0]['subspace']}/{rows[0]['radius_index']}"
                f.save([{"unit": uid, "unit_rows": len(rows), **r} for r in rows])

            m = net()
            radius_sweep(m, Xt, yt, radii=radii, dims=dims, n_subspaces=1 if q else 3,
                         max_samples=200 if q else 1000, device=device, random_state=seed,
                         progress=progress, done=done, on_result=save)
            summaries[name] = finalize_sweep(f.read(), f.out, f"radius sweep: {tag}",
                                             depth=getattr(m, "depth", None))
        elif name == "subspace-train":
            f = folder(name, "subspace_train", SUBSPACE_COLUMNS)
            kw = ({"radii": [0.1, 1.0, 10.0], "dims": [2, 8], "n_repeats": 1, "epochs": 1}
                  if q else {})
            subspace_train(net(), Xt, yt, Xv, yv, device=device, random_state=seed,
                           progress=progress, done=f.done, on_result=f.save, **kw)
            summaries[name] = finalize_subspace_train(f.read(), f.out,
                                                      f"subspace training: {tag}")
        elif name == "select":
            f = folder(name, "select", SELECT_COLUMNS)
            kw = {"n_inits": 8, "dim": 5, "epochs": 1} if q else {}
            select(net(), Xt, yt, Xv, yv, device=device, random_state=seed, progress=progress,
                   done=f.done, on_result=f.save, **kw)
            summaries[name] = finalize_select(f.read(), f.out, f"selection: {tag}",
                                              random_state=seed)
        elif name == "trajectory":
            f = folder(name, "trajectory", TRAJECTORY_COLUMNS)
            kw = {"radii": [0.1, 1.0], "epochs": 1} if q else {}
            trajectory(net(), Xt, yt, Xv, yv, device=device, random_state=seed,
                       progress=progress, done=f.done, on_result=f.save, **kw)
            summaries[name] = finalize_trajectory(f.read(), f.out, f"radius trajectory: {tag}")
        else:
            f = folder(name, "decompose", DECOMPOSE_COLUMNS, {"bias": False})
            kw = ({"alphas": [0.1, 1.0, 10.0], "dim": 5, "n_subspaces": 1, "n_inits": 4,
                   "init_dim": 4, "train_alphas": [0.1, 1.0], "steps": 4, "records": 2}
                  if q else {})
            decompose(net(bias=False), Xt, yt, Xv, yv, device=device, random_state=seed,
                      progress=progress, done=f.done, on_result=f.save, **kw)
            summaries[name] = finalize_decompose(f.read(), f.out,
                                                 f"decomposition: {tag} (bias-free)")
        seconds = f.finish(summary=summaries[name])
        timing.append({"experiment": name, "seconds": time.perf_counter() - start,
                       "seconds_total": f.previous_seconds + seconds, "rows": len(f.read())})
    table = pd.DataFrame(timing)
    write_report(out, summaries, table, common)
    return table


def _dint_text(summary: dict) -> str:
    d = pd.DataFrame(summary.get("d_int", []))
    if d.empty:
        return "(no intrinsic dimension: no full-space baseline)"
    d["convention"] = np.where(d["relative"], "0.9 x baseline", "absolute 0.9")
    piv = d.set_index(["kind", "convention", "radius_ratio"])["d_int"].unstack("radius_ratio")
    piv.columns = [f"r/r_ref={c:g}" for c in piv.columns]
    return markdown_table(piv.reset_index(), ".0f")


def write_report(out, summaries: dict, timing: pd.DataFrame, config: dict) -> Path:
    """``report.md``: every figure with its key numbers (see ``docs/reproduction.md``)."""
    out = Path(out)
    lines = [f"# goldisk reproduce: {config.get('dataset')}, {config.get('model')} "
             f"{config.get('hidden')}", "",
             f"Seed {config.get('seed')}; every folder holds its raw CSV and `config.json`.", "",
             markdown_table(timing, ".1f"), ""]
    s = summaries.get("sweep")
    if s:
        lines += ["## Radius sweep (Fort & Scherlis Fig. 3-5)", "",
                  "![sweep](sweep/sweep.png)", "", "![norms](sweep/sweep_norms.png)", ""]
        for k, v in s.items():
            if k.startswith("d="):
                lines.append(f"- {k}: peak Tr(H)/||H|| = {v['peak_trace_ratio']:.2f} at "
                             f"r/r_ref = {v['peak_ratio']:.3g}; "
                             f"zone (Tr(H)/||H|| > 1): {v['zone']}; "
                             f"fraction of positive eigenvalues at the peak "
                             f"{v['frac_positive_at_peak']:.2f}")
        if "loss_exponent_large_r" in s:
            lines.append(f"- loss ~ r^{s['loss_exponent_large_r']:.2f} for r >= 10 r_ref "
                         f"(depth {s.get('depth')})")
        lines.append("")
    s = summaries.get("subspace-train")
    if s:
        lines += ["## Training in random subspaces (Fort Fig. 2)", "",
                  "![subspace](subspace-train/subspace_train.png)", "",
                  f"Full-space baseline accuracy at r_ref: {s.get('baseline')}", "",
                  "Intrinsic dimension (NaN: not reached at the largest d):", "",
                  _dint_text(s), ""]
    s = summaries.get("select")
    if s:
        an = pd.DataFrame(s["analysis"])
        an = an[an["epoch"] > 0]
        cols = [c for c in ("epoch", "measure", "slope", "ci_low", "ci_high", "p_slope",
                            "diff", "p_welch", "p_perm") if c in an]
        lines += ["## Selecting inits (Fort Fig. 6)", "", "![select](select/select.png)", "",
                  "![slopes](select/select_slopes.png)", "",
                  f"{s['n_inits']} inits; {s['n_tests']} tests (Bonferroni level "
                  f"{0.05 / max(1, s['n_tests']):.2g}).", "",
                  markdown_table(an[cols]), "", "Correlations between the measures:", "",
                  markdown_table(pd.DataFrame(s["correlations"])), ""]
    s = summaries.get("trajectory")
    if s:
        lines += ["## Radius during training (Chang)", "",
                  "![trajectory](trajectory/trajectory.png)", "",
                  markdown_table(pd.DataFrame(s["fits"])), "",
                  markdown_table(pd.DataFrame(s["final"])), ""]
    s = summaries.get("decompose")
    if s:
        lines += ["## Deconstructing the zone (Vysogorets et al.)", ""]
        lines += [f"![{f}](decompose/{f})" for f in s.get("figures", [])] + [""]
        for k in ("zone_alpha", "peak_alpha", "peak_trace_ratio", "peak_g_trace_ratio",
                  "peak_h_trace_ratio", "h_trace_ratio_range", "temperature_max_abs_diff"):
            if k in s:
                lines.append(f"- {k}: {s[k]}")
        lines.append("")
        if "inits_correlations" in s:
            lines += [markdown_table(pd.DataFrame(s["inits_correlations"])), ""]
        if "training" in s:
            lines += [markdown_table(pd.DataFrame(s["training"])), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
