"""Per-experiment summaries: figures, derived tables and a dict of key numbers.

``finalize_*`` turn a finished experiment table into what ``report.md`` shows;
``markdown_table`` renders a table without extra dependencies.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["markdown_table", "finalize_subspace_train", "finalize_select",
           "finalize_trajectory", "finalize_decompose", "finalize_sweep"]


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """A GitHub markdown table (no extra dependency).

    Examples
    --------
    >>> print(markdown_table(pd.DataFrame({"a": [1.23456], "b": ["x"]})))
    | a | b |
    |---|---|
    | 1.23 | x |
    """
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "nan" if not math.isfinite(v) else format(float(v), floatfmt)
        return str(v)

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------- finalizers
def finalize_subspace_train(df: pd.DataFrame, out, title: str = "") -> dict:
    """Figure, intrinsic-dimension table and key numbers of ``subspace_train``."""
    from ._plots import plot_subspace_train
    from ._subspace_train import intrinsic_dimension

    out = Path(out)
    has_full = (df["kind"] == "full").any()
    tables = []
    for thr, rel in ((0.9, True), (0.9, False)):
        if rel and not has_full:
            continue
        tables.append(intrinsic_dimension(df, thr, relative=rel))
    dint = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    dint.to_csv(out / "intrinsic_dimension.csv", index=False)
    plot_subspace_train(df, dint, out / "subspace_train.png", title=title)
    acc = (df.groupby(["kind", "dim", "radius_ratio"])["val_acc"].mean().unstack("radius_ratio"))
    acc.to_csv(out / "accuracy_grid.csv")
    summary = {"figure": "subspace_train.png", "d_int": dint.to_dict("records"),
               "accuracy": {f"{k}/d={d}": {str(r): _f(v) for r, v in row.items()}
                            for (k, d), row in acc.iterrows()}}
    if has_full:
        full = df[df["kind"] == "full"]
        ratios = full["radius_ratio"].to_numpy()
        nearest = ratios[np.argmin(np.abs(np.log(ratios)))]
        summary["baseline"] = _f(full.loc[full["radius_ratio"] == nearest, "val_acc"].mean())
    return summary


def finalize_select(df: pd.DataFrame, out, title: str = "", random_state=0) -> dict:
    """Figures, regression/selection tables and key numbers of ``select``."""
    from ._plots import plot_select, plot_select_slopes
    from ._select import measure_correlations, selection_analysis

    out = Path(out)
    analysis = selection_analysis(df, random_state=random_state)
    corr = measure_correlations(df)
    analysis.to_csv(out / "select_analysis.csv", index=False)
    corr.to_csv(out / "select_correlations.csv", index=False)
    plot_select(df, analysis, out / "select.png", title=title or None)
    plot_select_slopes(analysis, out / "select_slopes.png", title=title or None)
    n_tests = int((analysis["epoch"] > 0).sum())
    return {"figures": ["select.png", "select_slopes.png"], "n_inits": int(df["init"].nunique()),
            "n_tests": n_tests, "analysis": analysis.to_dict("records"),
            "correlations": corr.to_dict("records")}


def finalize_trajectory(df: pd.DataFrame, out, title: str = "") -> dict:
    """Figure, radius-growth fits and key numbers of ``trajectory``."""
    from ._plots import plot_trajectory
    from ._trajectory import fit_radius_growth

    out = Path(out)
    fits = fit_radius_growth(df)
    fits.to_csv(out / "trajectory_fits.csv", index=False)
    plot_trajectory(df, fits, out / "trajectory.png", title=title or None)
    last = df.sort_values("step").groupby(["mode", "repeat", "radius_ratio"]).tail(1)
    final = last.pivot_table(index="radius_ratio", columns="mode",
                             values=["val_acc", "radius_over_ref"], aggfunc="mean")
    final.columns = [f"{a}_{b}" for a, b in final.columns]
    final = final.reset_index()
    final.to_csv(out / "trajectory_final.csv", index=False)
    return {"figure": "trajectory.png", "fits": fits.to_dict("records"),
            "final": final.to_dict("records")}


def finalize_decompose(df: pd.DataFrame, out, title: str = "") -> dict:
    """Figures and key numbers of ``decompose``."""
    from ._decompose import spearman
    from ._plots_decompose import (
        plot_decompose_curvature,
        plot_decompose_inits,
        plot_decompose_training,
    )

    out = Path(out)
    figs = []
    summary: dict = {}
    parts = set(df["part"])
    if parts & {"scale", "temperature"}:
        plot_decompose_curvature(df, out / "decompose_curvature.png", title=title or None)
        figs.append("decompose_curvature.png")
    sc = df[df["part"] == "scale"]
    if not sc.empty:
        curve = sc.groupby("alpha")[["trace_ratio", "g_trace_ratio", "h_trace_ratio",
                                     "frobenius", "g_frobenius", "h_frobenius", "loss",
                                     "confidence"]].mean()
        curve.to_csv(out / "decompose_scale_mean.csv")
        inside = curve[curve["trace_ratio"] > 1.0]
        peak = curve["trace_ratio"].idxmax()
        summary["zone_alpha"] = ([_f(inside.index.min()), _f(inside.index.max())]
                                 if not inside.empty else None)
        summary["peak_alpha"] = _f(peak)
        summary["peak_trace_ratio"] = _f(curve.loc[peak, "trace_ratio"])
        summary["peak_g_trace_ratio"] = _f(curve.loc[peak, "g_trace_ratio"])
        summary["peak_h_trace_ratio"] = _f(curve.loc[peak, "h_trace_ratio"])
        summary["h_trace_ratio_range"] = [_f(curve["h_trace_ratio"].min()),
                                          _f(curve["h_trace_ratio"].max())]
    tp = df[df["part"] == "temperature"]
    if not sc.empty and not tp.empty:
        a = sc.set_index(["repeat", "alpha"])["trace_ratio"]
        b = tp.set_index(["repeat", "alpha"])["trace_ratio"]
        both = pd.concat([a, b], axis=1, keys=["scale", "temp"]).dropna()
        summary["temperature_max_abs_diff"] = _f((both["scale"] - both["temp"]).abs().max())
    ini = df[df["part"] == "inits"]
    if not ini.empty:
        plot_decompose_inits(df, out / "decompose_inits.png", title=title or None)
        figs.append("decompose_inits.png")
        rows = []
        for branch, sel in (("alpha<1", ini["alpha"] < 1), ("alpha>=1", ini["alpha"] >= 1),
                            ("all", ini["alpha"] > 0)):
            for col in ("confidence", "entropy", "logit_grad_norm", "mean_logit_grad_norm",
                        "loss", "grad_norm"):
                x, y = ini.loc[sel, "trace_ratio"], ini.loc[sel, col]
                ok = np.isfinite(x) & np.isfinite(y)
                if ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
                    rho, p = spearman(x[ok], y[ok])  # exact p for n <= 8
                    rows.append({"branch": branch, "quantity": col, "n": int(ok.sum()),
                                 "spearman": rho, "p": p})
        corr = pd.DataFrame(rows)
        corr.to_csv(out / "decompose_inits_correlations.csv", index=False)
        summary["inits_correlations"] = corr.to_dict("records")
    tr = df[df["part"] == "training"]
    if not tr.empty:
        plot_decompose_training(df, out / "decompose_training.png", title=title or None)
        figs.append("decompose_training.png")
        last = tr.sort_values("step").groupby(["optimizer", "alpha"]).tail(1)
        zero = tr.groupby(["optimizer", "alpha"])["zero_logit_frac"].max().rename(
            "max_zero_logit_frac")
        table = last.set_index(["optimizer", "alpha"])[["val_acc", "train_loss", "lr"]].join(
            zero).reset_index()
        table.to_csv(out / "decompose_training_final.csv", index=False)
        summary["training"] = table.to_dict("records")
    summary["figures"] = figs
    return summary


def finalize_sweep(df: pd.DataFrame, out, title: str = "", depth: int | None = None) -> dict:
    """Figure and key numbers of the engine's radius sweep (``goldisk sweep``)."""
    from ..sweep import plot_sweep
    from ._plots import plot_sweep_norms

    out = Path(out)
    plot_sweep(df, out / "sweep.png", title=title or None)
    plot_sweep_norms(df, out / "sweep_norms.png")
    summary: dict = {"figure": "sweep.png"}
    for d, grp in df.groupby("dim"):
        m = grp.groupby("radius_ratio")[["trace", "frobenius"]].mean()
        cross = m[m["trace"] > m["frobenius"]]
        summary[f"trace_above_norm_d={d}"] = ([_f(cross.index.min()), _f(cross.index.max())]
                                             if not cross.empty else None)
    for d, grp in df.groupby("dim"):
        curve = grp.groupby("radius_ratio")[["trace_ratio", "frac_positive"]].mean()
        inside = curve[curve["trace_ratio"] > 1.0]
        summary[f"d={d}"] = {
            "peak_ratio": _f(curve["trace_ratio"].idxmax()),
            "peak_trace_ratio": _f(curve["trace_ratio"].max()),
            "zone": ([_f(inside.index.min()), _f(inside.index.max())]
                     if not inside.empty else None),
            "frac_positive_at_peak": _f(curve.loc[curve["trace_ratio"].idxmax(),
                                                  "frac_positive"]),
        }
    loss = df[df["dim"] == df["dim"].min()].groupby("radius_ratio")["loss"].mean()
    big = loss[loss.index >= 10.0]
    if len(big) >= 2:
        slope = np.polyfit(np.log(big.index.to_numpy(float)), np.log(big.to_numpy(float)), 1)[0]
        summary["loss_exponent_large_r"] = float(slope)
        summary["depth"] = depth
    small = loss[loss.index <= 0.1]
    if len(small):
        summary["loss_small_r"] = [float(small.min()), float(small.max())]
    return summary
