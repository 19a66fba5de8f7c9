"""How long ``goldisk reproduce --dataset mnist5k`` takes, from a reduced run of each part.

``reproduce`` runs five experiments at their default sizes; every one is a list of
independent units (the rows of its CSV, what ``--resume`` skips) of about equal cost. This
script runs a few units of each at the *default* per-unit size (same data: the 3,750-image
training split of mnist5k, the reproduce net MLP 784-32-32-10 unless ``--hidden`` is
given), times them, and multiplies by the number of units the default run has:

* sweep: 2 of the 25 radii, 1 of the 3 (init, plane) pairs, d = 10/50/100, 1,000 images
  (x 37.5);
* subspace-train: 1 of the 7 radii, 1 of the 2 repeats, all d and both kinds + full (x 14);
* select: 3 of the 60 inits (x 20);
* trajectory: 1 of the 7 radii, 1 of the 2 repeats, free and fixed (x 14);
* decompose: scale and temperature on 1 of 3 subspaces (x 3), 3 of 60 inits (x 20), one
  of the 9 training scales for GD and Adam (x 9).

The per-part estimates and the measured seconds go to
benchmarks/results/mnist5k_reproduce_time_cpu.json (saved after every part).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/mnist5k_reproduce_time.py \
        [--hidden 200,200] [--skip subspace-train,...]
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
from goldisk.experiments import decompose, select, subspace_train, trajectory  # noqa: E402
from goldisk.models import make_model  # noqa: E402
from goldisk.sweep import radius_sweep  # noqa: E402


def parts(Xt, yt, Xv, yv, hidden):
    def net(bias=True):
        return make_model("mlp", 784, 10, hidden=hidden, bias=bias)

    radii = list(10 ** (np.linspace(-4, 4, 25) / 2))
    q = {"progress": False, "random_state": 0}
    return {
        "sweep": (75 / 2, lambda: radius_sweep(net(), Xt, yt, radii=[radii[12], radii[15]],
                                               dims=(10, 50, 100), n_subspaces=1,
                                               max_samples=1000, **q)),
        "subspace-train": (14, lambda: subspace_train(net(), Xt, yt, Xv, yv, radii=[1.0],
                                                      n_repeats=1, **q)),
        "select": (20, lambda: select(net(), Xt, yt, Xv, yv, n_inits=3, **q)),
        "trajectory": (14, lambda: trajectory(net(), Xt, yt, Xv, yv, radii=[1.0],
                                              n_repeats=1, **q)),
        "decompose-scale-temperature": (3, lambda: decompose(
            net(False), Xt, yt, Xv, yv, parts=("scale", "temperature"), n_subspaces=1, **q)),
        "decompose-inits": (20, lambda: decompose(net(False), Xt, yt, Xv, yv,
                                                  parts=("inits",), n_inits=3, **q)),
        "decompose-training": (9, lambda: decompose(net(False), Xt, yt, Xv, yv,
                                                    parts=("training",), train_alphas=[1.0],
                                                    **q)),
    }


def main(argv):
    hidden, skip = (32, 32), set()
    while argv:
        flag, value, argv = argv[0], argv[1], argv[2:]
        if flag == "--hidden":
            hidden = tuple(int(h) for h in value.split(","))
        elif flag == "--skip":
            skip = set(value.split(","))
    torch.set_num_threads(1)
    path = RESULTS_DIR / f"mnist5k_reproduce_time_{'x'.join(map(str, hidden))}_cpu.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    out.update({"environment": environment("cpu"), "hidden": list(hidden)})
    train, val = load_mnist5k().split(test_size=0.25, random_state=0)
    for name, (factor, fn) in parts(train.X, train.y, val.X, val.y, hidden).items():
        if name in out.get("parts", {}) or name in skip:
            continue
        t0 = time.perf_counter()
        fn()
        s = time.perf_counter() - t0
        out.setdefault("parts", {})[name] = {"measured_s": s, "factor": factor,
                                              "estimate_s": s * factor}
        out["estimate_total_s"] = sum(p["estimate_s"] for p in out["parts"].values())
        path.write_text(json.dumps(out, indent=1))
        print(f"{name}: {s:.1f} s x {factor} = {s * factor:.0f} s", flush=True)
    print(f"total estimate {out['estimate_total_s'] / 60:.1f} min")


if __name__ == "__main__":
    main(sys.argv[1:])
