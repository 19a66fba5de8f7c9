"""Which statistic of an initialization predicts its trainability (measured, not assumed).

Many inits of several architectures (radius ``r / r_ref``, softmax temperature, seed) are
drawn; at each, every statistic of ``goldisk.curvature.INIT_STATISTICS`` and the suggested
learning rates (:func:`goldisk.curvature.suggest_lr`) are measured; then each init is
trained with Adam (mini-batches, one shuffling shared by all inits: common random numbers)
and with full-batch gradient descent at its own suggested ``lr = 2 / lambda_max``, and its
validation accuracy is recorded after each of ``epochs``. :func:`trainability_correlations`
gives the Spearman correlation of each statistic with each accuracy, with a bootstrap
interval over inits, and a verdict against the direction the literature claims.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._radius import SoftmaxTemperature
from .._rng import check_random_state
from .._run import run_hooks
from ..curvature import INIT_STATISTICS, init_statistics, suggest_lr
from ._protocol import units_of
from ._training import check_ratios, check_training, point_at, train

__all__ = ["trainability", "trainability_correlations", "TRAINABILITY_OPTIMIZERS",
           "trainability_columns"]

TRAINABILITY_OPTIMIZERS = ("adam", "gd")
#: lambda_max is measured on all of X by suggest_lr instead
_CHEAP = [s for s in INIT_STATISTICS if s != "lambda_max"]


def trainability_columns(epochs=(1, 5, 20), optimizers=TRAINABILITY_OPTIMIZERS) -> list[str]:
    """The CSV columns of :func:`trainability` (one row per init)."""
    acc = [f"{o}_{m}_{e}" for o in optimizers for e in epochs for m in ("acc", "loss")]
    return ["unit", "unit_rows", "init", "model", "radius_ratio", "temperature", "seed",
            *INIT_STATISTICS, "adam_sharpness", "lr_gd", "lr_adam_suggested", "lr_adam",
            "init_acc", *acc, "gd_diverged", "seconds"]


def _at(hist: pd.DataFrame, epoch: int, column: str) -> float:
    """``column`` at ``epoch``, or at the last record before it (training stopped on
    divergence: its last accuracy stands, the loss is infinite)."""
    rows = hist[hist["epoch"] <= epoch + 1e-9]
    if column == "val_loss" and rows["epoch"].iloc[-1] < epoch - 1e-9:
        return math.inf
    return float(rows[column].iloc[-1])


def trainability(
    models: dict,
    X, y, X_val, y_val,
    *,
    radii=(0.5, 1.0, 2.0, 4.0),
    temperatures=(1.0, 4.0),
    n_seeds: int = 2,
    epochs=(1, 5, 20),
    adam_lr="auto",
    gd_factor: float = 1.0,
    batch_size: int = 64,
    stat_samples: int | None = 500,
    n_batch: int = 64,
    dim: int = 20,
    reference: str = "xavier",
    **hooks,
) -> pd.DataFrame:
    """Every init statistic at many inits, and their accuracy after Adam and GD training.

    Parameters
    ----------
    models : dict of name -> torch.nn.Module
        Architectures (returning logits); weights are redrawn with ``reference`` for
        every init and rescaled to ``radius_ratio * r_ref``.
    X, y, X_val, y_val : arrays
        Training data (statistics on its first ``stat_samples``; ``lambda_max`` and the
        suggested learning rates on all of it, as full-batch GD sees it) and validation
        data (the accuracies).
    radii, temperatures, n_seeds
        The grid: every model x radius x temperature x seed is one init (one row).
    epochs : sequence of int
        Accuracy after each (Adam: epochs of ``batch_size`` mini-batches; GD: steps).
    adam_lr : float or "auto"
        ``"auto"``: each init's ``suggest_lr(..., "adam").lr`` (preconditioned sharpness,
        Adam's preconditioner from one full-batch gradient). This is the rate the
        estimators' ``lr="auto"`` measures (they average the preconditioner over their
        mini-batches), not their default ``lr=None`` (``1e-3`` in the full space).
    gd_factor : float
        GD trains at ``gd_factor x`` its own ``suggest_lr(..., "sgd").lr = 2 / lambda_max``
        (1: at the edge of stability at init).
    **hooks
        ``random_state``, ``progress``, ``done``, ``on_result``: see
        :class:`goldisk.experiments.RunHooks`.

    Returns
    -------
    pandas.DataFrame
        One row per init: the grid point, every statistic, ``adam_sharpness``, the
        learning rates, ``init_acc``, ``{adam,gd}_{acc,loss}_{epoch}``, ``gd_diverged``.

    Examples
    --------
    >>> from goldisk.datasets import make_circles3
    >>> from goldisk.models import MLP
    >>> ds = make_circles3(40)
    >>> df = trainability({"mlp": MLP(2, (4,), 3)}, ds.X, ds.y, ds.X, ds.y, radii=[1],
    ...                   temperatures=[1, 2], n_seeds=1, epochs=[1], stat_samples=20,
    ...                   n_batch=4, dim=2, progress=False)
    >>> len(df), bool((df["lr_gd"] * df["lambda_max"]).round(9).eq(2).all())
    (2, True)
    """
    hooks = run_hooks("trainability", hooks)
    radii = check_ratios(radii, "radii")
    temperatures = check_ratios(temperatures, "temperatures")
    epochs = sorted({int(e) for e in epochs})
    if not epochs or epochs[0] < 1:
        raise ValueError(f"epochs must be ints >= 1, e.g. (1, 5, 20); got {epochs!r}.")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"n_seeds must be an int >= 1, got {n_seeds!r}.")
    if not (isinstance(gd_factor, int | float) and math.isfinite(gd_factor) and gd_factor > 0):
        raise ValueError(f"gd_factor must be a finite number > 0, got {gd_factor!r}.")
    if adam_lr != "auto":
        check_training("adam", adam_lr, 1, batch_size, lr_name="adam_lr")
    if not isinstance(models, dict) or not models:
        raise ValueError("models must be a non-empty dict of name -> torch.nn.Module.")
    X = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    Xv = torch.as_tensor(np.asarray(X_val), dtype=torch.float64)
    yv = torch.as_tensor(np.asarray(y_val), dtype=torch.int64)
    n_s = len(X) if stat_samples is None else min(int(stat_samples), len(X))
    grid = list(itertools.product(models, radii, temperatures, range(n_seeds)))
    rng = check_random_state(hooks.random_state)
    seeds = rng.integers(0, 2**62, size=(len(grid), 2))
    shuffle_seed = int(rng.integers(0, 2**62))
    columns = trainability_columns(epochs)
    units = units_of(hooks, range(len(grid)), "trainability", columns)
    for k, (name, ratio, temp, s) in enumerate(grid):
        if not units.pending(k):
            continue
        start = _clock()
        base = point_at(models[name], reference, int(seeds[k, 0]), ratio=float(ratio))
        net = SoftmaxTemperature(base, float(temp)) if temp != 1.0 else base
        net = net.double()
        stats = init_statistics(net, X[:n_s], y[:n_s], _CHEAP, loss="cross_entropy",
                                n_batch=n_batch, dim=dim, random_state=int(seeds[k, 1]))
        gd = suggest_lr(net, X, y, "sgd", random_state=int(seeds[k, 1]))
        stats["lambda_max"] = gd.lambda_max  # on all of X, as GD trains
        # Adam's preconditioner after one full-batch step (sign-like first steps): the
        # one averaged over mini-batches gave rates ~30x larger that did not train
        ad = suggest_lr(net, X, y, "adam", random_state=int(seeds[k, 1]))
        lr_adam = ad.lr if adam_lr == "auto" else float(adam_lr)
        row = {"init": k, "model": name, "radius_ratio": float(ratio),
               "temperature": float(temp), "seed": s, **stats,
               "adam_sharpness": ad.lambda_max, "lr_gd": gd_factor * gd.lr,
               "lr_adam_suggested": ad.lr, "lr_adam": lr_adam}
        for opt, lr in (("adam", lr_adam), ("gd", gd_factor * gd.lr)):
            model = _copy(net)
            hist = train(model, X, y, Xv, yv, optimizer=opt, lr=lr, epochs=epochs[-1],
                         batch_size=batch_size, random_state=shuffle_seed,
                         dtype=torch.float32)
            row["init_acc"] = float(hist["val_acc"].iloc[0])
            for e in epochs:
                row[f"{opt}_acc_{e}"] = _at(hist, e, "val_acc")
                row[f"{opt}_loss_{e}"] = _at(hist, e, "val_loss")
            if opt == "gd":
                row["gd_diverged"] = bool(hist["diverged"].any())
        row["seconds"] = _clock() - start
        units.finish(k, [row])
    return units.frame()


def _copy(net: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(net)


def _clock() -> float:
    import time

    return time.perf_counter()


def _spearman_ci(x, y, n_boot: int, rng) -> tuple[float, float, float, float]:
    """Spearman rho, its percentile bootstrap 95% interval over inits, and scipy's p."""
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return (math.nan,) * 4
    rho, p = stats.spearmanr(x, y)
    idx = rng.integers(0, n, size=(n_boot, n))
    # ranks within each resample (repeated inits tie: average ranks), all at once
    a, b = stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    ok = den > 0
    boots = (a * b).sum(1)[ok] / den[ok]
    lo, hi = np.percentile(boots, [2.5, 97.5]) if len(boots) else (math.nan, math.nan)
    return float(rho), float(lo), float(hi), float(p)


def trainability_correlations(df: pd.DataFrame, *, n_boot: int = 1000, by_model=True,
                              random_state=0) -> pd.DataFrame:
    """Spearman correlation of each init statistic with each accuracy of :func:`trainability`.

    Returns one row per (``group``, ``statistic``, ``optimizer``, ``epoch``): ``group`` is
    ``"all"`` (every init) or a model name (``by_model``); ``spearman``, ``ci_low``,
    ``ci_high`` (percentile bootstrap over inits, ``n_boot`` resamples), ``p``, ``n``,
    ``claimed`` (+1/-1: the direction the literature says is better) and ``verdict``:
    ``"supported"`` when the interval excludes 0 on the claimed side, ``"contradicted"``
    when it excludes 0 on the other side, else ``"inconclusive"``.
    """
    rng = check_random_state(random_state)
    stats = [s for s in (*INIT_STATISTICS, "adam_sharpness") if s in df]
    groups = [("all", df)]
    if by_model and "model" in df and df["model"].nunique() > 1:
        groups += [(str(m), g) for m, g in df.groupby("model", sort=False)]
    rows = []
    for (group, g), opt in itertools.product(groups, TRAINABILITY_OPTIMIZERS):
        for col in sorted(c for c in g if c.startswith(f"{opt}_acc_")):
            acc = g[col].to_numpy(float)
            for s in stats:
                x = g[s].to_numpy(float)
                rho, lo, hi, p = _spearman_ci(x, acc, n_boot, rng)
                claimed = INIT_STATISTICS.get(s, -1)
                verdict = ("inconclusive" if not (lo > 0 or hi < 0)
                           else "supported" if (lo > 0) == (claimed > 0) else "contradicted")
                rows.append({"group": group, "statistic": s, "optimizer": opt,
                             "epoch": int(col.rsplit("_", 1)[1]), "spearman": rho,
                             "ci_low": lo, "ci_high": hi, "p": p,
                             "n": int(np.sum(np.isfinite(x) & np.isfinite(acc))),
                             "claimed": claimed, "verdict": verdict})
    return pd.DataFrame(rows)


def plot_trainability(corr: pd.DataFrame, path=None, group: str = "all", title=None):
    """Spearman correlation of each statistic (rows) with each accuracy (columns: optimizer
    and epoch), signed so that positive means "as claimed"; ``*`` marks an interval that
    excludes 0. Saves to ``path`` when given; returns the figure."""
    from .._mpl import pyplot_free

    plt = pyplot_free()
    g = corr[corr["group"] == group].copy()
    g["signed"] = g["spearman"] * g["claimed"]
    g["col"] = g["optimizer"] + " @" + g["epoch"].astype(str)
    cols = list(dict.fromkeys(g.sort_values(["optimizer", "epoch"])["col"]))
    stats = list(dict.fromkeys(g["statistic"]))
    M = g.pivot(index="statistic", columns="col", values="signed").loc[stats, cols]
    sig = g.assign(s=(g["ci_low"] > 0) | (g["ci_high"] < 0)).pivot(
        index="statistic", columns="col", values="s").loc[stats, cols]
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 3, 0.42 * len(stats) + 1.5))
    im = ax.imshow(M.to_numpy(float), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(stats)):
        for j in range(len(cols)):
            v = M.iat[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:+.2f}{'*' if sig.iat[i, j] else ''}", ha="center",
                        va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(stats)), stats, fontsize=8)
    fig.colorbar(im, ax=ax, label="Spearman x claimed sign (+: as claimed)")
    ax.set_title(title or f"init statistic vs validation accuracy ({group})", fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
