"""Li et al. and Fort Fig. 2 on real MNIST (mnist5k): subspace training up to d = 3,000.

Fort's net 784-200-200-10 (D = 199,210) at r_X (Xavier), Adam on theta with goldisk's
default learning-rate rule (``lr=None``: ``goldisk.estimators._lr.subspace_lr``, i.e.
``max(1e-3, 30 / d)`` for Adam), 10 epochs, batch 64, the 3,750-image training split,
validation accuracy on the other 1,250. 3 draws (init direction and projection) per d
unless said (draw k uses the same init direction in every part).

Parts (each saved to benchmarks/results/mnist5k_subspace_cpu.json as it finishes, a
rerun skips the parts already there):

* plane: hyperplanes, sparse projection (Fort's), d = 10 ... 1000 (Li's grid), and the
  full-space baseline (Adam 1e-3) from the same point.
* beyond: hyperplanes at d = 1500 / 2000 / 3000 (where does accuracy reach 0.9?).
* sphere: hyperspheres of radius |w0| on the same grid up to 1000.
* dense: d = 100 and 300 with the dense orthonormal projection, one draw (is the
  projection a cause?).
* half: d = 300 and 1000 with half the training images (1,875): the direction in which
  Li's 60,000 images would move the numbers.
* quarter: the same with a quarter of the images (937).
* epochs30: d = 100 and 1000 with 30 epochs (is it limited by the number of steps?).
* lr3e-2: d = 100 and 1000 with the fixed lr 3e-2 of the earlier runs.
* he: d = 300 and 1000 from a He-normal init at He's radius (Li's init).
* r<ratio>-plane / r<ratio>-sphere: d = 300 and 1000 at r = 0.1, 3, 10 r_X (Fort Fig. 2),
  one draw, the rule's lr at that radius (x r / r_X above r_X).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/mnist5k_subspace.py [part ...]
    PYTHONPATH=. python benchmarks/mnist5k_subspace.py plot     # the figure
    PYTHONPATH=. python benchmarks/mnist5k_subspace.py summary  # means and d_int
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, environment  # noqa: E402

from goldisk import SubspaceModule  # noqa: E402
from goldisk.datasets import load_mnist5k  # noqa: E402
from goldisk.estimators._lr import subspace_lr  # noqa: E402
from goldisk.experiments import subspace_train  # noqa: E402
from goldisk.models import make_model  # noqa: E402
from goldisk.projections import make_projection  # noqa: E402

PATH = RESULTS_DIR / "mnist5k_subspace_cpu.json"
DIMS = (10, 50, 100, 200, 300, 500, 750, 1000)
#: Li et al. Fig. (MNIST, FC), read off the figure.
LI = {10: 0.18, 50: 0.45, 100: 0.60, 200: 0.76, 300: 0.82, 500: 0.865, 750: 0.895,
      1000: 0.91}
COLS = ("kind", "dim", "radius_ratio", "projection", "lr", "val_acc", "best_val_acc",
        "train_acc", "final_radius", "seconds")


def rule_lr(model, d, projection="sparse", radius=1.0):
    """The learning rate goldisk's default (lr=None) picks for Adam in this subspace at
    ``radius`` r / r_X (as ``GoldilocksClassifier`` passes its init radius)."""
    P = make_projection(projection, sum(p.numel() for p in model.parameters()), d,
                        random_state=0)
    return subspace_lr(torch.optim.Adam, SubspaceModule(model, P), radius)


def run(dims, kind="hyperplane", projection="sparse", full=False, half=False, lr=None,
        fraction=1.0,
        n_repeats=3, epochs=10, radius=1.0, reference="xavier"):
    train, val = load_mnist5k().split(test_size=0.25, random_state=0)
    X, y = train.X, train.y
    if half:
        fraction = 0.5
    n = int(len(X) * fraction)  # a prefix of the shuffled split: 79-107 per class at 937
    X, y = X[:n], y[:n]
    model = make_model("mlp", 784, 10, hidden=(200, 200))
    rows, t0 = [], time.perf_counter()
    for i, d in enumerate(dims):
        lr_d = rule_lr(model, d, projection, radius) if lr is None else lr
        df = subspace_train(model, X, y, val.X, val.y, radii=(radius,), dims=(d,),
                            kinds=(kind,), n_repeats=n_repeats, projection=projection, lr=lr_d,
                            reference=reference,
                            epochs=epochs,
                            full_space=full and i == 0, random_state=0, progress=False)
        rows += df[[c for c in COLS + ("repeat",) if c in df.columns]].to_dict(
            orient="records")
        print(kind, projection, d, f"lr {lr_d:.3g}", df["val_acc"].round(3).tolist(),
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        _save_partial(rows)
    return {"rows": rows, "n_train": len(X), "n_repeats": n_repeats, "epochs": epochs,
            "seconds": time.perf_counter() - t0}


_CURRENT = {}


def _save_partial(rows):
    if _CURRENT:
        out = json.loads(PATH.read_text()) if PATH.exists() else {}
        out[_CURRENT["name"] + "-partial"] = {"rows": rows}
        PATH.write_text(json.dumps(out, indent=1))


PARTS = {
    "plane": lambda: run(DIMS, full=True),
    "beyond": lambda: run((1500, 2000, 3000)),
    "sphere": lambda: run(DIMS, kind="hypersphere"),
    "dense": lambda: run((100, 300), projection="dense", n_repeats=1),
    "half": lambda: run((300, 1000), half=True),
    "quarter": lambda: run((300, 1000), fraction=0.25),
    "epochs30": lambda: run((100, 1000), epochs=30),
    "lr3e-2": lambda: run((100, 1000), lr=3e-2),
    "he": lambda: run((300, 1000), reference="he"),
    **{f"r{r:g}-{k[5:]}": (lambda r=r, k=k: run((300, 1000), kind=k, radius=r, n_repeats=1))
       for r in (0.1, 3.0, 10.0) for k in ("hyperplane", "hypersphere")},
}


def plot(path=Path(__file__).resolve().parent.parent / "docs" / "figures"
         / "mnist5k_subspace_train.png"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = json.loads(PATH.read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(list(LI), list(LI.values()), "k*--", label="Li et al. (60,000 images)")
    for name, style in (("plane", "o-"), ("beyond", "o-"), ("sphere", "s-"),
                        ("dense", "^"), ("half", "v"), ("quarter", "<"), ("epochs30", "D"),
                        ("lr3e-2", "x")):
        part = out.get(name) or out.get(name + "-partial")
        if not part:
            continue
        by_d = {}
        for r in part["rows"]:
            if r["kind"] != "full":
                by_d.setdefault(r["dim"], []).append(r["val_acc"])
        ds = sorted(by_d)
        (line,) = ax.plot(ds, [sum(by_d[d]) / len(by_d[d]) for d in ds], style,
                          label=f"{name} (mean)")
        for d in ds:  # every draw, faint
            ax.plot([d] * len(by_d[d]), by_d[d], ".", color=line.get_color(), alpha=0.4)
        full = [r["val_acc"] for r in part["rows"] if r["kind"] == "full"]
        if full:
            ax.axhline(sum(full) / len(full), color="gray", lw=0.8, label="full space")
    ax.axhline(0.9, color="gray", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("subspace dimension d")
    ax.set_ylabel("validation accuracy (10 epochs)")
    ax.set_title("mnist5k, 784-200-200-10 at r_X, Adam lr = goldisk's rule; dots: draws",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def summary():
    """Mean (min-max) accuracy per part and d, and d_int (absolute 0.9 and 0.9 x full)."""
    import pandas as pd

    from goldisk.experiments import intrinsic_dimension

    out = json.loads(PATH.read_text())
    full = None
    for name in PARTS:
        if name not in out:
            continue
        df = pd.DataFrame(out[name]["rows"])
        if (df["kind"] == "full").any():
            full = df[df["kind"] == "full"]
        g = df[df["kind"] != "full"].groupby("dim")["val_acc"]
        print(name, out[name].get("n_train"), "images,", out[name].get("epochs"), "epochs:",
              "; ".join(f"{d}: {m:.3f} ({lo:.3f}-{hi:.3f}) lr {lr:.3g}" for d, m, lo, hi, lr
                        in zip(g.mean().index, g.mean(), g.min(), g.max(),
                               df[df["kind"] != "full"].groupby("dim")["lr"].first(),
                               strict=True)))
    if full is not None:
        print("full space:", full["val_acc"].round(4).tolist())
        for kinds in (("plane", "beyond"), ("sphere",)):
            df = pd.concat([full] + [pd.DataFrame(out[k]["rows"]) for k in kinds if k in out])
            for rel in (False, True):
                print(kinds, intrinsic_dimension(df, relative=rel)[
                    ["kind", "relative", "level", "d_int"]].to_string(index=False))


def main(names):
    if names == ["plot"]:
        return plot()
    if names == ["summary"]:
        return summary()
    torch.set_num_threads(1)
    out = json.loads(PATH.read_text()) if PATH.exists() else {}
    out["environment"] = environment("cpu")
    for name in names or list(PARTS):
        if name in out:
            continue
        _CURRENT["name"] = name
        res = PARTS[name]()
        out = json.loads(PATH.read_text()) if PATH.exists() else {}
        out.pop(name + "-partial", None)
        out[name] = res
        PATH.write_text(json.dumps(out, indent=1))
        print(name, f"{res['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
