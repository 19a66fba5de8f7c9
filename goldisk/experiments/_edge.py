"""The edge of stability at init: full-batch GD at multiples of ``2 / lambda_max(init)``.

Cohen et al. 2021 (Fig. 1): below ``2 / lambda_max`` gradient descent lowers the loss while
the sharpness rises (progressive sharpening) until it reaches ``2 / lr``, then hovers there
with a non-monotone loss (the edge of stability); a little above it the loss spikes and the
sharpness falls below ``2 / lr`` (a catapult, Lewkowycz et al. 2020); far above, it
diverges. :func:`edge_of_stability` runs this from one init and records the loss and the
sharpness along the way; :func:`classify_edge_runs` names each run's regime.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..curvature import per_sample_loss, suggest_lr

__all__ = ["edge_of_stability", "classify_edge_runs", "plot_edge_of_stability"]


def _sharpness(net, X, y, seed) -> float:
    from ..curvature import top_eigenvalues

    return float(top_eigenvalues(net, X, y, k=1, random_state=seed)[0])


def edge_of_stability(model: nn.Module, X, y, *, factors=(0.5, 0.9, 1.1, 2.0, 4.0),
                      steps: int = 200, sharpness_every: int = 5, optimizer: str = "sgd",
                      random_state=0) -> pd.DataFrame:
    """Full-batch training from ``model``'s init at ``factor x suggest_lr(model).lr``.

    ``optimizer="sgd"``: plain gradient descent, ``lr = factor * 2 / lambda_max``;
    ``"adam"``: full-batch Adam at ``factor x`` its suggested rate (preconditioned
    sharpness, threshold 38). Returns one row per (factor, step): ``factor``, ``lr``,
    ``step``, ``loss``, ``accuracy`` (training set, float64), and ``sharpness`` (the top
    Hessian eigenvalue, every ``sharpness_every`` steps, else NaN; for Adam the plain
    Hessian's, as Cohen et al. plot it next to the preconditioned one), ``threshold``
    (``2 / lr`` for GD).

    Examples
    --------
    >>> from goldisk.datasets import make_circles3
    >>> from goldisk.models import MLP
    >>> ds = make_circles3(40)
    >>> df = edge_of_stability(MLP(2, (4,), 3), ds.X, ds.y, factors=[0.5], steps=3)
    >>> df["step"].tolist(), bool(df["loss"].is_monotonic_decreasing)
    ([0, 1, 2, 3], True)
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
    steps = int(steps)
    every = int(sharpness_every)
    if steps < 1 or every < 1:
        raise ValueError(f"steps and sharpness_every must be >= 1, got {steps}, {every}.")
    X = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    base = copy.deepcopy(model).double()
    sug = suggest_lr(base, X, y, optimizer, random_state=random_state)
    rows = []
    for factor in factors:
        net = copy.deepcopy(base)
        lr = float(factor) * sug.lr
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else \
            torch.optim.Adam(params, lr=lr)
        for step in range(steps + 1):
            opt.zero_grad()
            z = net(X)
            loss = per_sample_loss(z, y).mean()
            value = float(loss.detach())
            sharp = _sharpness(net, X, y, random_state) if step % every == 0 and \
                math.isfinite(value) else math.nan
            rows.append({"factor": float(factor), "lr": lr, "step": step, "loss": value,
                         "accuracy": float((z.argmax(-1) == y).double().mean()),
                         "sharpness": sharp,
                         "threshold": 2.0 / lr if optimizer == "sgd" else math.nan})
            if not math.isfinite(value) or step == steps:
                break
            loss.backward()
            opt.step()
    df = pd.DataFrame(rows)
    df.attrs["lambda_max"] = sug.lambda_max
    df.attrs["suggested_lr"] = sug.lr
    return df


def classify_edge_runs(df: pd.DataFrame, rise: float = 1e-3,
                       progress: float = 0.1) -> pd.DataFrame:
    """One row per factor: ``first_rise`` (first step whose loss exceeds the previous one by
    a relative ``rise``; -1 for none), ``max_loss``, ``final_loss``, ``final_sharpness``,
    ``sharpness_at_rise`` and ``regime``:

    - ``"diverge"``: the loss became non-finite or did not end at least ``progress``
      (relative) below its initial value (e.g. a blow-up that left a dead network at the
      chance loss ``log C``);
    - ``"converge"``: the loss never rose;
    - ``"catapult"``: the loss rose while the sharpness was above ``2 / lr``, and ended
      below its initial value with the sharpness below ``2 / lr``;
    - ``"edge of stability"``: the loss first rose only once progressive sharpening had
      brought the sharpness to ``2 / lr`` (within 5%), and it ended below its initial value.
    """
    out = []
    for factor, g in df.groupby("factor", sort=True):
        loss = g["loss"].to_numpy(float)
        sharp = g["sharpness"].to_numpy(float)
        thr = float(g["threshold"].iloc[0])
        finite = np.isfinite(loss).all()
        up = np.flatnonzero(loss[1:] > loss[:-1] * (1 + rise)) + 1 if finite else np.array([])
        first = int(up[0]) if len(up) else -1
        known = np.flatnonzero(np.isfinite(sharp))
        before = known[known <= max(first - 1, 0)]
        s_rise = float(sharp[before[-1]]) if len(before) else math.nan
        s_final = float(sharp[known[-1]]) if len(known) else math.nan
        if not finite or loss[-1] > (1 - progress) * loss[0]:
            regime = "diverge"
        elif first < 0:
            regime = "converge"
        elif float(sharp[known[0]]) > thr and s_final < thr:
            regime = "catapult"
        elif s_rise >= 0.95 * thr:
            regime = "edge of stability"
        else:
            regime = "catapult" if s_final < thr else "edge of stability"
        out.append({"factor": factor, "lr": float(g["lr"].iloc[0]), "first_rise": first,
                    "initial_loss": float(loss[0]), "max_loss": float(np.nanmax(loss)),
                    "final_loss": float(loss[-1]), "final_accuracy":
                    float(g["accuracy"].iloc[-1]), "initial_sharpness": float(sharp[known[0]]),
                    "sharpness_at_rise": s_rise, "final_sharpness": s_final,
                    "two_over_lr": thr, "regime": regime})
    return pd.DataFrame(out)


def plot_edge_of_stability(df: pd.DataFrame, path=None, title: str | None = None):
    """Loss and sharpness against step, one colour per factor, ``2 / lr`` dashed (the layout
    of Cohen et al. 2021, Fig. 1). Saves to ``path`` when given; returns the figure."""
    from .._mpl import pyplot_free

    plt = pyplot_free()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
    factors = sorted(df["factor"].unique())
    for i, f in enumerate(factors):
        g = df[df["factor"] == f]
        c = cmap(i / max(len(factors) - 1, 1))
        label = f"{f:g} x 2/lambda_max(init)"
        ax1.plot(g["step"], g["loss"], color=c, label=label)
        s = g[np.isfinite(g["sharpness"])]
        ax2.plot(s["step"], s["sharpness"], color=c, marker=".", label=label)
        if np.isfinite(g["threshold"].iloc[0]):
            ax2.axhline(g["threshold"].iloc[0], color=c, ls="--", lw=0.8)
    # a diverging run would squash the others: clip to 10 x the initial loss / threshold
    first = float(df["loss"].iloc[0])
    ax1.set_ylim(max(float(df["loss"][df["loss"] > 0].min()) / 2, 1e-6), 10 * first)
    thr = df["threshold"][np.isfinite(df["threshold"])]
    sh = df["sharpness"][np.isfinite(df["sharpness"]) & (df["sharpness"] > 0)]
    if len(sh):
        top = 10 * float(thr.max()) if len(thr) else 10 * float(sh.iloc[0])
        ax2.set_ylim(float(sh.min()) / 2, top)
    ax1.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    ax2.set(xlabel="step", ylabel="lambda_max (Hessian)", yscale="log",
            title="sharpness (dashed: 2 / lr)")
    ax1.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
