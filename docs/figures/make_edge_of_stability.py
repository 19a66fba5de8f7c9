"""Regenerate docs/figures/digits_edge_of_stability*.png and the tables of the
"edge of stability" section of docs/reproduction.md (a few minutes on 2 CPU cores).

    PYTHONPATH=. OMP_NUM_THREADS=1 python docs/figures/make_edge_of_stability.py OUT_DIR
"""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from goldisk.datasets import load_digits
from goldisk.experiments import (
    classify_edge_runs,
    edge_of_stability,
    plot_edge_of_stability,
    point_at,
)
from goldisk.models import MLP


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/edge")
    out.mkdir(parents=True, exist_ok=True)
    figs = Path(__file__).parent
    ds = load_digits()  # all 1797 samples, standardized
    net = point_at(MLP(64, (32, 32), 10), "xavier", 0)

    t = time.perf_counter()
    gd = edge_of_stability(net, ds.X, ds.y, factors=(0.5, 0.9, 1.1, 2.0, 4.0), steps=200,
                           sharpness_every=5, random_state=0)
    print(f"GD: {time.perf_counter() - t:.0f} s, lambda_max(init) = {gd.attrs['lambda_max']:.4f}")
    gd.to_csv(out / "edge_gd.csv", index=False)
    regimes = classify_edge_runs(gd)
    regimes.to_csv(out / "edge_gd_regimes.csv", index=False)
    print(regimes.to_markdown(index=False, floatfmt=".4g"))
    plot_edge_of_stability(gd, figs / "digits_edge_of_stability.png",
                           title="digits, MLP 64-32-32-10 (xavier, seed 0), full-batch GD at "
                                 "factor x 2/lambda_max(init)")

    t = time.perf_counter()
    adam = edge_of_stability(net, ds.X, ds.y, factors=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
                             steps=100, sharpness_every=50, optimizer="adam", random_state=0)
    print(f"Adam: {time.perf_counter() - t:.0f} s, preconditioned sharpness(init) = "
          f"{adam.attrs['lambda_max']:.1f}, suggested lr = {adam.attrs['suggested_lr']:.4g}")
    adam.to_csv(out / "edge_adam.csv", index=False)
    rows = []
    for f, g in adam.groupby("factor"):
        loss = g["loss"].to_numpy()
        up = np.flatnonzero(loss[1:] > loss[:-1] * (1 + 1e-3)) + 1
        rows.append({"factor": f, "lr": g["lr"].iloc[0],
                     "first_rise": int(up[0]) if len(up) else -1,
                     "loss@10": loss[min(10, len(loss) - 1)], "max_loss": np.nanmax(loss),
                     "final_loss": loss[-1], "final_accuracy": g["accuracy"].iloc[-1]})
    table = pd.DataFrame(rows)
    table.to_csv(out / "edge_adam_table.csv", index=False)
    print(table.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
