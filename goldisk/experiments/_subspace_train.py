"""Training inside random hyperplanes and hyperspheres (Fort & Scherlis Fig. 2; Li et al.).

For every radius ratio ``rho = r / r_ref`` a reference init is rescaled globally to
``rho * r_ref`` and only ``theta`` in R^d is trained: on the hyperplane
``w = w0 + P theta`` or on the hypersphere of radius ``|w0|`` through ``w0``. Each repeat
has one init direction and, per dimension, one projection, shared by all radii and both
kinds (common random numbers), so along ``r`` only the radius changes. Full-space
training from the same points gives the baseline of the intrinsic dimension.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
from torch import nn

from .._flat import ParamLayout
from .._names import SUBSPACE_KINDS
from .._radius import reference_radius
from .._rng import MAX_SEED, check_random_state
from .._subspace import SubspaceModule
from .._validation import check_positive_int
from ..projections import make_projection
from ._protocol import Training, check_reference, protocol, units_of
from ._training import check_ratios, check_train_val, check_training, point_at

__all__ = ["subspace_train", "intrinsic_dimension", "SUBSPACE_KINDS", "SUBSPACE_COLUMNS"]

SUBSPACE_COLUMNS = [
    "unit", "unit_rows", "repeat", "radius_index", "radius_ratio", "log10_r2_ratio", "radius",
    "reference_radius", "kind", "dim", "D", "projection", "optimizer", "lr", "epochs",
    "val_acc", "best_val_acc", "val_loss", "train_acc", "train_loss", "init_val_acc",
    "init_val_loss", "final_radius", "diverged", "seconds",
]


def subspace_train(
    model: nn.Module,
    X,
    y,
    X_val,
    y_val,
    *,
    radii=(0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0),
    dims=(10, 30, 100, 300),
    kinds=SUBSPACE_KINDS,
    n_repeats: int = 2,
    reference: str = "xavier",
    projection: str = "dense",
    full_space: bool = True,
    full_lr: float = 1e-3,
    training: Training | None = None,
    **settings,
) -> pd.DataFrame:
    """Validation accuracy reached inside random d-dimensional subspaces at radius r.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture; its weights are redrawn with ``reference`` for every repeat.
    X, y, X_val, y_val : arrays
        Training and validation data.
    radii : sequence of float
        Ratios ``r / r_ref`` of the subspace's origin ``w0``.
    dims : sequence of int
        Subspace dimensions ``d`` (at most ``D``).
    kinds : subset of {"hyperplane", "hypersphere"}
    n_repeats : int
        Independent (init direction, projections) draws.
    projection : {"dense", "sparse", "sparse-li", "fastfood", "auto"}
    training : Training, optional
        Training of ``theta`` (by default Adam, ``lr=3e-2``, 10 epochs); its fields may
        also be passed as keywords.
    full_space, full_lr : bool, float
        Also train all ``D`` parameters from each point (rows with ``kind="full"``,
        ``dim=D``) with learning rate ``full_lr``: the baseline of ``d_int``.
    **settings
        ``optimizer``, ``lr``, ``epochs``, ``batch_size``, ``dtype``, ``device`` (see
        :class:`Training`) and ``random_state``, ``progress``, ``done``, ``on_result``
        (see :class:`RunHooks`).

    Returns
    -------
    pandas.DataFrame
        One row per (repeat, radius, kind, dim): ``val_acc`` (final), ``best_val_acc``,
        ``val_loss``, ``train_acc``, ``train_loss``, ``init_val_acc``, ``radius`` (start),
        ``final_radius``, ``seconds``...

    Examples
    --------
    >>> from goldisk.models import MLP
    >>> from goldisk.datasets import make_circles3
    >>> ds = make_circles3(60)
    >>> df = subspace_train(MLP(2, (8,), 3), ds.X, ds.y, ds.X, ds.y, radii=[1.0], dims=[4],
    ...                     n_repeats=1, epochs=1, progress=False)
    >>> sorted(df["kind"])
    ['full', 'hyperplane', 'hypersphere']
    """
    training, hooks = protocol("subspace_train", training, settings, lr=3e-2)
    check_reference(reference)
    check_positive_int(n_repeats, "n_repeats")
    radii = check_ratios(radii, "radii")
    kinds = list(kinds)
    bad = [k for k in kinds if k not in SUBSPACE_KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {SUBSPACE_KINDS}, got {kinds}.")
    D = ParamLayout(model).D
    dims = sorted({int(d) for d in dims})
    if not dims or dims[0] < 1 or dims[-1] > D:
        raise ValueError(f"dims must be integers in [1, D={D}], got {dims}.")
    if full_space:
        check_training(training.optimizer, full_lr, training.epochs, training.batch_size,
                       lr_name="full_lr")
    r_ref = reference_radius(model, reference)
    check_train_val(model, X, y, X_val, y_val)
    rng = check_random_state(hooks.random_state)
    seeds = rng.integers(0, MAX_SEED, size=(int(n_repeats), 2 + len(dims)))
    plan = []
    for rep in range(int(n_repeats)):
        for i in range(len(radii)):
            if full_space:
                plan.append((rep, i, "full", D))
            for kind in kinds:
                for d in dims:
                    plan.append((rep, i, kind, d))
    uid = "{}/{}/{}/{}".format
    units = units_of(hooks, [uid(*p) for p in plan], "subspace-train", SUBSPACE_COLUMNS)
    for rep, i, kind, d in plan:
        if not units.pending(uid(rep, i, kind, d)):
            continue
        ratio = float(radii[i])
        net = point_at(model, reference, int(seeds[rep, 0]), ratio=ratio, reference=reference)
        if kind == "full":
            trained, lr_used = net, full_lr
        else:
            j = dims.index(d)
            P = make_projection(projection, D, d, random_state=int(seeds[rep, 2 + j]),
                                dtype=training.dtype)
            trained = SubspaceModule(net.to(training.dtype), P, kind, share_projection=True)
            lr_used = training.lr
        start = time.perf_counter()
        hist = training.fit(trained, X, y, X_val, y_val, random_state=int(seeds[rep, 1]),
                            lr=lr_used)
        first, last = hist.iloc[0], hist.iloc[-1]
        units.finish(uid(rep, i, kind, d), [{
            "repeat": rep, "radius_index": i, "radius_ratio": ratio,
            "log10_r2_ratio": 2 * math.log10(ratio), "radius": ratio * r_ref,
            "reference_radius": r_ref, "kind": kind, "dim": d, "D": D,
            "projection": "identity" if kind == "full" else projection,
            "optimizer": training.optimizer, "lr": lr_used, "epochs": training.epochs,
            "val_acc": float(last["val_acc"]), "best_val_acc": float(hist["val_acc"].max()),
            "val_loss": float(last["val_loss"]), "train_acc": float(last["train_acc"]),
            "train_loss": float(last["train_loss"]), "init_val_acc": float(first["val_acc"]),
            "init_val_loss": float(first["val_loss"]), "final_radius": float(last["radius"]),
            "diverged": bool(last["diverged"]), "seconds": time.perf_counter() - start,
        }])
    return units.frame()


def _first_crossing(dims: np.ndarray, acc: np.ndarray, level: float) -> float:
    """Smallest d where the piecewise-linear (in log d) curve acc(d) reaches ``level``."""
    above = np.nonzero(acc >= level)[0]
    if above.size == 0:
        return math.nan
    k = int(above[0])
    if k == 0:
        return float(dims[0])
    a0, a1 = acc[k - 1], acc[k]
    t = (level - a0) / (a1 - a0)
    return float(10 ** (np.log10(dims[k - 1]) + t * (np.log10(dims[k]) - np.log10(dims[k - 1]))))


def intrinsic_dimension(df: pd.DataFrame, threshold: float = 0.9, relative: bool = True,
                        baseline: float | None = None, metric: str = "val_acc") -> pd.DataFrame:
    """Intrinsic dimension ``d_int`` at every radius and kind from a subspace-train table.

    ``d_int`` is the smallest ``d`` at which the mean (over repeats) of ``metric`` reaches
    the level, interpolated linearly in ``log10 d`` between the measured dimensions; NaN
    when no measured ``d`` reaches it. Convention: with ``relative=True`` (Li et al.'s
    ``d_int90``) the level is ``threshold * baseline``, the baseline being the mean
    full-space accuracy from the reference radius (``kind="full"``, the ratio closest to 1)
    unless given; with ``relative=False`` the level is ``threshold`` itself (Li et al.'s
    MNIST number uses the absolute 0.9). Because the first crossing of a higher level
    cannot come earlier, ``d_int`` is non-decreasing in ``threshold``.

    Returns
    -------
    pandas.DataFrame with ``kind``, ``radius_ratio``, ``threshold``, ``relative``,
    ``level``, ``d_int`` and ``reached``.

    Examples
    --------
    >>> df = pd.DataFrame({"kind": "hyperplane", "radius_ratio": 1.0, "dim": [10, 100],
    ...                    "val_acc": [0.5, 0.9]})
    >>> intrinsic_dimension(df, 0.7, relative=False)["d_int"].round(1).tolist()
    [31.6]
    """
    if relative and baseline is None:
        full = df[df["kind"] == "full"]
        if full.empty:
            raise ValueError("relative=True needs full-space rows (kind='full') or baseline=.")
        ratios = full["radius_ratio"].to_numpy()
        nearest = ratios[np.argmin(np.abs(np.log(ratios)))]
        baseline = float(full.loc[full["radius_ratio"] == nearest, metric].mean())
    level = threshold * baseline if relative else threshold
    rows = []
    sub = df[df["kind"] != "full"]
    for (kind, ratio), grp in sub.groupby(["kind", "radius_ratio"]):
        curve = grp.groupby("dim")[metric].mean().sort_index()
        d_int = _first_crossing(curve.index.to_numpy(float), curve.to_numpy(float), level)
        rows.append({"kind": kind, "radius_ratio": float(ratio), "threshold": threshold,
                     "relative": relative, "level": level, "d_int": d_int,
                     "reached": bool(math.isfinite(d_int))})
    return pd.DataFrame(rows)
