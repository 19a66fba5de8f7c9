"""Why pixels/255 halves Fort's Tr(H)/||H||_F on mnist5k: preprocessing variants at r_X.

Fort & Scherlis's 784-200-200-10 ReLU net (Xavier direction rescaled to r_X), dense
orthonormal hyperplanes d = 10/50/100, exact float64 Hessian over the first 1,000 images
(the sweep's defaults). Variants separate the two things "unit" changes at once: the
per-pixel mean (unit images are all >= 0) and the scale (mean square 0.10 against 0.91):

* standardize      per pixel, mean 0, std 1 (goldisk's default)
* unit             pixels / 255
* unit-centred     pixels / 255 minus the per-pixel mean (no rescaling)
* unit-scaled      pixels / 255 times one constant, so the mean square equals standardize's
* standardize+mean standardized pixels plus the unit mean image times that same constant

Also: a radius grid for "standardize" and "unit" (is "unit" the same curve, shifted?) and
the top eigenvalues of the input second-moment matrix X^T X / N (the rank-one mean term).
The stored results/mnist5k_preprocessing_cpu.json was stopped (CPU share) before the
"unit" grid finished: it holds the "standardize" grid only.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/mnist5k_preprocessing.py
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
from goldisk.models import make_model  # noqa: E402
from goldisk.sweep import radius_sweep  # noqa: E402

PAPER = {10: 2.85, 50: 4.95, 100: 5.85}


def variants():
    std = load_mnist5k("standardize").X.astype(np.float64)
    unit = load_mnist5k("unit").X.astype(np.float64)
    mean = unit.mean(axis=0)
    c = np.sqrt((std**2).mean() / (unit**2).mean())
    return {"standardize": std, "unit": unit, "unit-centred": unit - mean,
            "unit-scaled": unit * c, "standardize+mean": std + c * mean}, float(c)


def moments(X, n=1000):
    M = X[:n].T @ X[:n] / n
    ev = np.linalg.eigvalsh(M)[::-1]
    return {"mean_square": float(np.trace(M) / X.shape[1]), "trace": float(np.trace(M)),
            "top3": [float(v) for v in ev[:3]], "top1_share": float(ev[0] / np.trace(M)),
            "mean_norm2": float((X[:n].mean(axis=0) ** 2).sum())}


def sweep(X, y, radii, n_subspaces):
    model = make_model("mlp", 784, 10, hidden=(200, 200))
    df = radius_sweep(model, X.astype(np.float32), y, radii=radii, dims=(10, 50, 100),
                      n_subspaces=n_subspaces, random_state=0, progress=False)
    cols = ["trace_ratio", "frac_positive", "g_trace_ratio", "trace", "frobenius", "eig_max",
            "g_trace", "g_frobenius", "h_frobenius", "loss"]
    g = df.groupby(["radius_ratio", "dim"])[cols].mean().reset_index()
    return g.to_dict(orient="records")


def main():
    torch.set_num_threads(1)
    y = load_mnist5k().y
    Xs, c = variants()
    out = {"environment": environment("cpu"), "paper_fig4_x0": PAPER, "scale_c": c,
           "moments": {k: moments(X) for k, X in Xs.items()}, "at_rX": {}, "radius_grid": {}}
    path = RESULTS_DIR / "mnist5k_preprocessing_cpu.json"
    t0 = time.perf_counter()
    for name, X in Xs.items():
        out["at_rX"][name] = sweep(X, y, [1.0], 2)
        path.write_text(json.dumps(out, indent=1))
        print(name, [round(r["trace_ratio"], 2) for r in out["at_rX"][name]], flush=True)
    grid = [0.3, 1.0, 2.0, 3.0, 5.0, 10.0]
    for name in ("standardize", "unit"):
        out["radius_grid"][name] = sweep(Xs[name], y, grid, 1)
        path.write_text(json.dumps(out, indent=1))
        print(name, "grid done", flush=True)
    out["seconds"] = time.perf_counter() - t0
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path} in {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
