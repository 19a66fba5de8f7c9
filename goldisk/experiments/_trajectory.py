"""The radius of the weights during training (Chang; Fort & Scherlis, point 8).

Full-space training from the reference init rescaled to several radii, recording the
radius every few steps: free training, and training with the radius held fixed (Chang:
radial gradient component removed, renormalized after every step).
:func:`fit_radius_growth` tests Chang's ``r ~ sqrt(t)`` law: it fits ``r = a + b sqrt(t)``,
``r^2 = r0^2 + c t`` (a random walk) and the exponent of ``r`` against ``t``, and gives
the random-walk prediction ``c = D lr^2`` of an optimizer that moves every coordinate by
about ``lr`` per step in a random direction (Adam early in training).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from torch import nn

from .._flat import ParamLayout
from .._radius import reference_radius
from .._rng import MAX_SEED, check_random_state
from .._validation import check_positive_int
from ._protocol import Training, check_reference, protocol, units_of
from ._training import check_ratios, check_train_val, point_at

__all__ = ["trajectory", "fit_radius_growth", "TRAJECTORY_COLUMNS"]

TRAJECTORY_COLUMNS = [
    "unit", "unit_rows", "repeat", "radius_index", "radius_ratio", "reference_radius",
    "mode", "D", "optimizer", "lr", "step", "epoch", "radius", "radius_over_ref",
    "train_loss", "train_acc", "val_loss", "val_acc", "zero_logit_frac", "diverged",
]


def trajectory(
    model: nn.Module,
    X,
    y,
    X_val,
    y_val,
    *,
    radii=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
    modes=("free", "fixed"),
    n_repeats: int = 2,
    reference: str = "xavier",
    records_per_epoch: int = 4,
    training: Training | None = None,
    **settings,
) -> pd.DataFrame:
    """Radius, loss and accuracy during training from several initial radii.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture; weights are redrawn with ``reference`` for every repeat.
    radii : sequence of float
        Initial radius ratios ``r0 / r_ref``.
    modes : subset of {"free", "fixed"}
        ``"fixed"`` holds the radius at ``r0`` (Chang).
    training : Training, optional
        Chang: Adam, 15 epochs (the default here); its fields may also be keywords.
    records_per_epoch : int
        About this many records per epoch, plus one before training: a record every
        ``max(1, steps_per_epoch // records_per_epoch)`` optimizer steps, counted across
        epochs (so 22 steps an epoch and 4 records give one every 5 steps, 4.4 an epoch;
        with no more steps an epoch than ``records_per_epoch``, every step).
    **settings
        ``optimizer``, ``lr``, ``epochs``, ``batch_size``, ``dtype``, ``device`` (see
        :class:`Training`) and ``random_state``, ``progress``, ``done``, ``on_result``
        (see :class:`RunHooks`).

    Returns
    -------
    pandas.DataFrame, one row per (repeat, radius, mode, record).

    Examples
    --------
    >>> from goldisk.models import MLP
    >>> from goldisk.datasets import make_circles3
    >>> ds = make_circles3(60)
    >>> df = trajectory(MLP(2, (8,), 3), ds.X, ds.y, ds.X, ds.y, radii=[0.1], epochs=2,
    ...                 n_repeats=1, records_per_epoch=1, progress=False)
    >>> df.groupby("mode")["step"].count().to_dict()
    {'fixed': 3, 'free': 3}
    """
    training, hooks = protocol("trajectory", training, settings, epochs=15)
    check_reference(reference)
    check_positive_int(n_repeats, "n_repeats")
    radii = check_ratios(radii, "radii")
    modes = list(modes)
    if not modes or any(m not in ("free", "fixed") for m in modes):
        raise ValueError(f"modes must be a non-empty subset of ('free', 'fixed'), got {modes}.")
    if int(records_per_epoch) < 1:
        raise ValueError(f"records_per_epoch must be >= 1, got {records_per_epoch}.")
    check_train_val(model, X, y, X_val, y_val)
    D = ParamLayout(model).D
    r_ref = reference_radius(model, reference)
    rng = check_random_state(hooks.random_state)
    seeds = rng.integers(0, MAX_SEED, size=(int(n_repeats), 2))
    n_steps = math.ceil(len(X) / (len(X) if training.optimizer == "gd"
                                  else min(training.batch_size, len(X))))
    every = max(1, n_steps // int(records_per_epoch))
    plan = [(r, i, m) for r in range(int(n_repeats)) for i in range(len(radii)) for m in modes]
    uid = "{}/{}/{}".format
    units = units_of(hooks, [uid(*p) for p in plan], "trajectory", TRAJECTORY_COLUMNS)
    for rep, i, mode in plan:
        if not units.pending(uid(rep, i, mode)):
            continue
        net = point_at(model, reference, int(seeds[rep, 0]), ratio=float(radii[i]),
                       reference=reference)
        hist = training.fit(net, X, y, X_val, y_val, random_state=int(seeds[rep, 1]),
                            fixed_radius=mode == "fixed", record_every=every)
        meta = {"repeat": rep, "radius_index": i, "radius_ratio": float(radii[i]),
                "reference_radius": r_ref, "mode": mode, "D": D,
                "optimizer": training.optimizer, "lr": training.lr}
        rows = [{**meta, **{k: v for k, v in h.items() if k in TRAJECTORY_COLUMNS},
                 "radius_over_ref": h["radius"] / r_ref} for h in hist.to_dict("records")]
        units.finish(uid(rep, i, mode), rows)
    return units.frame()


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else math.nan


def fit_radius_growth(df: pd.DataFrame) -> pd.DataFrame:
    """Fit the radius of each free run against the step ``t``.

    Returns one row per (repeat, radius_ratio) of the ``"free"`` runs with: ``r0``,
    ``r_final`` and ``r_final / r_ref``; ``a``, ``b``, ``r2_sqrt`` of ``r = a + b sqrt(t)``;
    ``c`` and ``r2_walk`` of ``r^2 = r0^2 + c t`` (least squares through the known
    intercept); ``c_walk = D lr^2`` (random walk with steps of ``lr`` per coordinate);
    ``exponent``, the least-squares slope of ``log r`` on ``log t`` over the second half
    of the run (0.5 for ``r ~ sqrt(t)`` once ``r >> r0``, 0 if the radius stays put).

    Examples
    --------
    >>> t = np.arange(0, 101)
    >>> df = pd.DataFrame({"mode": "free", "repeat": 0, "radius_ratio": 0.1, "step": t,
    ...                    "radius": np.sqrt(0.01 + 0.5 * t), "reference_radius": 1.0,
    ...                    "D": 50, "lr": 0.1})
    >>> fit = fit_radius_growth(df).iloc[0]
    >>> [round(float(fit[k]), 6) for k in ("c", "r2_walk", "c_walk")]
    [0.5, 1.0, 0.5]
    """
    rows = []
    free = df[df["mode"] == "free"]
    for (rep, ratio), g in free.groupby(["repeat", "radius_ratio"]):
        g = g.sort_values("step")
        t = g["step"].to_numpy(float)
        r = g["radius"].to_numpy(float)
        ok = np.isfinite(r)
        t, r = t[ok], r[ok]
        r0 = float(r[0])
        A = np.stack([np.ones_like(t), np.sqrt(t)], 1)
        (a, b), *_ = np.linalg.lstsq(A, r, rcond=None)
        c = float(((r**2 - r0**2) * t).sum() / (t * t).sum()) if (t > 0).any() else math.nan
        half = t >= t.max() / 2
        half &= t > 0
        expo = (float(np.polyfit(np.log(t[half]), np.log(r[half]), 1)[0])
                if half.sum() >= 2 else math.nan)
        r_ref = float(g["reference_radius"].iloc[0])
        rows.append({
            "repeat": int(rep), "radius_ratio": float(ratio), "r0": r0, "r_final": float(r[-1]),
            "r_final_over_ref": float(r[-1]) / r_ref, "a": float(a), "b": float(b),
            "r2_sqrt": _r2(r, a + b * np.sqrt(t)), "c": c,
            "r2_walk": _r2(r**2, r0**2 + c * t),
            "c_walk": float(g["D"].iloc[0]) * float(g["lr"].iloc[0]) ** 2, "exponent": expo,
        })
    return pd.DataFrame(rows)
