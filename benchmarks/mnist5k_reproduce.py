"""Fort & Scherlis and Li et al. on real MNIST (mnist5k) at the sizes of a 2-core budget.

Parts (each saved to benchmarks/results/mnist5k_reproduce_cpu.json as it finishes; a
rerun skips the parts already there):

* sweep-relu / sweep-tanh: Fort's 784-200-200-10 net (D = 199,210), Xavier direction
  rescaled to r = rho r_X, x = log10(r^2/r_X^2) in {-2, -1, -1/3, 0, 1/3, 1, 2, 3}, dense
  orthonormal hyperplanes d = 10/50/100, 3 subspaces, exact float64 Hessian over the
  first 1,000 standardized images (goldisk sweep's defaults). Seconds per point give the
  time of the full ``goldisk sweep --dataset mnist5k --hidden 200,200`` (25 radii x 3).
* subspace-steps: d = 100 again with 30 epochs (is it limited by the number of steps?).
* subspace-train: hyperplane training at r_X for d in {10, 50, 100, 300} (Adam on theta,
  lr 3e-2, 10 epochs, batch 64) on the 3,750-image training split, validation accuracy on
  the 1,250 others; full-space Adam 1e-3 from the same point as the baseline.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/mnist5k_reproduce.py [part ...]
    PYTHONPATH=. python benchmarks/mnist5k_reproduce.py plot   # docs/figures/mnist5k_sweep.png
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, environment  # noqa: E402

from goldisk.datasets import load_mnist5k  # noqa: E402
from goldisk.experiments import subspace_train  # noqa: E402
from goldisk.models import make_model  # noqa: E402
from goldisk.sweep import radius_sweep  # noqa: E402

PATH = RESULTS_DIR / "mnist5k_reproduce_cpu.json"
XS = [-2, -1, -1 / 3, 0, 1 / 3, 1, 2, 3]
SWEEP_COLS = ["trace_ratio", "frac_positive", "trace", "frobenius", "loss", "accuracy"]


def sweep_part(activation):
    ds = load_mnist5k()
    model = make_model("mlp", 784, 10, hidden=(200, 200), activation=activation)
    radii = [10 ** (x / 2) for x in XS]
    t0 = time.perf_counter()
    df = radius_sweep(model, ds.X, ds.y, radii=radii, dims=(10, 50, 100), n_subspaces=3,
                      random_state=0, progress=False)
    seconds = time.perf_counter() - t0
    df["x"] = np.round(df["log10_r2_ratio"], 4)
    g = df.groupby(["x", "dim"])[SWEEP_COLS].agg(["mean", "std"])
    g.columns = [f"{a}_{b}" for a, b in g.columns]
    return {"rows": g.reset_index().to_dict(orient="records"), "seconds": seconds,
            "points": len(radii) * 3, "seconds_per_point": seconds / (len(radii) * 3),
            "full_sweep_estimate_s": seconds / (len(radii) * 3) * 25 * 3}


def subspace_part():
    train, val = load_mnist5k().split(test_size=0.25, random_state=0)
    model = make_model("mlp", 784, 10, hidden=(200, 200))
    t0 = time.perf_counter()
    df = subspace_train(model, train.X, train.y, val.X, val.y, radii=(1.0,),
                        dims=(10, 50, 100, 300), kinds=("hyperplane",), n_repeats=1,
                        random_state=0, progress=False)
    cols = [c for c in ("kind", "dim", "radius_ratio", "val_acc", "best_val_acc",
                        "train_acc", "seconds") if c in df.columns]
    return {"rows": df[cols].to_dict(orient="records"),
            "seconds": time.perf_counter() - t0}


#: Fort & Scherlis Fig. 4, read off the figure (x: [d=10, d=50, d=100]).
PAPER_TRACE = {0: [2.85, 4.95, 5.85], 1: [2.45, 3.55, 3.95]}
PAPER_FRAC = {0: [0.99, 0.88, 0.80]}


def plot(path=Path(__file__).resolve().parent.parent / "docs" / "figures"
         / "mnist5k_sweep.png"):
    """Tr/||H||_F and the fraction of positive eigenvalues against x, paper's points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out = json.loads(PATH.read_text())
    parts = [p for p in ("sweep-relu", "sweep-tanh") if p in out]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {10: "C0", 50: "C1", 100: "C2"}
    for part, style in zip(parts, ("-", ":"), strict=False):
        df = pd.DataFrame(out[part]["rows"])
        for d, g in df.groupby("dim"):
            for ax, col in zip(axes, ("trace_ratio", "frac_positive"), strict=True):
                ax.errorbar(g["x"], g[f"{col}_mean"], yerr=g[f"{col}_std"], ls=style,
                            marker="o", ms=3, color=colors[d], capsize=2,
                            label=f"{part.split('-')[1]}, d = {d}")
    for x, vals in PAPER_TRACE.items():
        for d, v in zip((10, 50, 100), vals, strict=True):
            axes[0].plot(x, v, "k*", ms=9, mfc=colors[d])
    for x, vals in PAPER_FRAC.items():
        for d, v in zip((10, 50, 100), vals, strict=True):
            axes[1].plot(x, v, "k*", ms=9, mfc=colors[d])
    axes[0].set_ylabel("Tr(H) / ||H||_F")
    axes[1].set_ylabel("fraction of positive eigenvalues")
    axes[1].axhline(0.5, color="gray", lw=0.8)
    for ax in axes:
        ax.set_xlabel("log10(r^2 / r_X^2)")
        ax.axvline(0, color="gray", lw=0.5)
    axes[0].legend(fontsize=7)
    fig.suptitle("mnist5k (standardized), 784-200-200-10, 1,000 images, 3 dense hyperplanes;"
                 " stars: Fort & Scherlis Fig. 4", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def steps_part():
    """Li trained on 60,000 images (16x the steps per epoch of 3,750): is d = 100 limited
    by the number of steps? The same run with 3x the epochs (30)."""
    train, val = load_mnist5k().split(test_size=0.25, random_state=0)
    model = make_model("mlp", 784, 10, hidden=(200, 200))
    t0 = time.perf_counter()
    df = subspace_train(model, train.X, train.y, val.X, val.y, radii=(1.0,), dims=(100,),
                        kinds=("hyperplane",), n_repeats=1, epochs=30, full_space=False,
                        random_state=0, progress=False)
    cols = ["kind", "dim", "val_acc", "best_val_acc", "train_acc", "seconds"]
    return {"rows": df[cols].to_dict(orient="records"), "epochs": 30,
            "seconds": time.perf_counter() - t0}


PARTS = {"sweep-relu": lambda: sweep_part("relu"), "subspace-train": subspace_part,
         "subspace-steps": steps_part,
         "sweep-tanh": lambda: sweep_part("tanh")}


def main(names):
    if names == ["plot"]:
        return plot()
    torch.set_num_threads(1)
    out = json.loads(PATH.read_text()) if PATH.exists() else {}
    out["environment"] = environment("cpu")
    for name in names or list(PARTS):
        if name in out:
            continue
        out[name] = PARTS[name]()
        PATH.write_text(json.dumps(out, indent=1))
        print(name, f"{out[name]['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
