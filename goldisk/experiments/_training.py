"""A plain-PyTorch training loop shared by the experiments.

Full-batch gradient descent (``optimizer="gd"``), mini-batch SGD or Adam; shuffling is
seeded through a :class:`torch.Generator` (never the global RNG). Every ``record_every``
steps (once per epoch by default, and once before the first step) it records the loss,
accuracy, radius and fraction of zero logits on the training set and, if given, on a
validation set. ``fixed_radius=True`` follows Chang: the radial component of the gradient
is removed before each step and the parameters are rescaled to the initial radius after
it, so the radius never changes.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._radius import REFERENCES, reference_radius, rescale_
from .._radius import radius as _radius
from .._rng import torch_generator
from .._subspace import SubspaceModule
from .._validation import check_data, check_outputs, check_positive_int
from ..curvature import logit_statistics
from ..models import init_weights_

__all__ = ["train", "OPTIMIZERS", "evaluate", "model_radius", "Units", "point_at",
           "check_ratios", "check_train_val", "log_grid"]

OPTIMIZERS = ("adam", "sgd", "gd")


def model_radius(model: nn.Module) -> float:
    """Radius of the full parameter vector (through the subspace for a SubspaceModule)."""
    if isinstance(model, SubspaceModule):
        return model.radius()
    return _radius(model)


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> dict:
    """Mean loss, accuracy, confidence, entropy, logit-gradient norm and zero-logit fraction.

    Examples
    --------
    >>> net = torch.nn.Linear(2, 3, bias=False)
    >>> _ = torch.nn.init.zeros_(net.weight)
    >>> s = evaluate(net, torch.ones(4, 2), torch.tensor([0, 1, 2, 0]))
    >>> round(s["loss"], 4), s["zero_logit_frac"]
    (1.0986, 1.0)
    """
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    for start in range(0, len(X), batch_size):
        xb, yb = X[start : start + batch_size], y[start : start + batch_size]
        for k, v in logit_statistics(model(xb), yb).items():
            totals[k] = totals.get(k, 0.0) + v
    model.train(was_training)
    return {k: v / len(X) for k, v in totals.items()}


def _make_optimizer(name: str, params, lr: float, momentum: float):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def _project_out_radial(params: list[torch.Tensor]) -> None:
    """Remove the component of the gradient along the parameter vector (Chang)."""
    w = torch.cat([p.detach().reshape(-1) for p in params])
    g = torch.cat([p.grad.reshape(-1) for p in params])
    coef = float(g @ w) / float(w @ w)
    for p in params:
        p.grad.sub_(coef * p.detach())


@torch.no_grad()
def _renormalize(params: list[torch.Tensor], r0: float) -> None:
    r = math.sqrt(sum(float(p.pow(2).sum()) for p in params))
    if r > 0 and math.isfinite(r):
        for p in params:
            p.mul_(r0 / r)


def train(
    model: nn.Module,
    X,
    y,
    X_val=None,
    y_val=None,
    *,
    optimizer: str = "adam",
    lr: float = 1e-3,
    epochs: int = 10,
    batch_size: int = 64,
    momentum: float = 0.0,
    fixed_radius: bool = False,
    record_every: int | None = None,
    random_state=0,
    dtype=torch.float32,
    device=None,
) -> pd.DataFrame:
    """Train ``model`` in place with cross-entropy and return its per-epoch history.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits; a :class:`goldisk.SubspaceModule` trains only ``theta``.
    X, y, X_val, y_val : arrays or tensors
        Training data and an optional validation set.
    optimizer : {"adam", "sgd", "gd"}
        ``"gd"`` is full-batch gradient descent (``batch_size`` is ignored).
    lr, momentum : float
        Learning rate; momentum for ``"sgd"``/``"gd"``.
    epochs : int
        Passes over the training set (for ``"gd"``: steps).
    fixed_radius : bool
        Hold the radius at its initial value: remove the radial gradient component,
        step, and rescale to the initial radius (Chang).
    record_every : int, optional
        Record every this many steps (default: once per epoch).
    random_state : int or Generator
        Seeds the shuffling.

    Returns
    -------
    pandas.DataFrame
        One row per record: ``step``, ``epoch`` (fractional), ``train_loss``,
        ``train_acc``, ``val_loss``, ``val_acc`` (NaN without a validation set),
        ``radius``, ``zero_logit_frac``, ``confidence``, ``logit_grad_norm`` (training set)
        and ``diverged`` (the loss became non-finite; training then stopped).

    Examples
    --------
    >>> net = torch.nn.Linear(2, 2)
    >>> X = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 8); y = torch.tensor([0, 1] * 8)
    >>> h = train(net, X, y, lr=0.1, epochs=3, batch_size=4)
    >>> h["step"].tolist(), bool(h["train_loss"].iloc[-1] < h["train_loss"].iloc[0])
    ([0, 4, 8, 12], True)
    """
    check_training(optimizer, lr, epochs, batch_size)
    if fixed_radius and isinstance(model, SubspaceModule):
        raise ValueError("fixed_radius=True acts on the full parameters; for a SubspaceModule use "
                         "kind='hypersphere' instead.")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device=device, dtype=dtype)
    X = torch.as_tensor(X).to(device=device, dtype=dtype)
    y = torch.as_tensor(y).to(device=device, dtype=torch.int64)
    has_val = X_val is not None
    if has_val:
        X_val = torch.as_tensor(X_val).to(device=device, dtype=dtype)
        y_val = torch.as_tensor(y_val).to(device=device, dtype=torch.int64)
    n = len(X)
    bs = n if optimizer == "gd" else min(int(batch_size), n)
    steps_per_epoch = math.ceil(n / bs)
    every = steps_per_epoch if record_every is None else int(record_every)
    if every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}.")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(optimizer, params, lr, momentum)
    gen = torch_generator(random_state)
    r0 = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in params))
    rows: list[dict] = []

    def record(step: int) -> bool:
        tr = evaluate(model, X, y)
        row = {"step": step, "epoch": step / steps_per_epoch, "train_loss": tr["loss"],
               "train_acc": tr["accuracy"], "val_loss": math.nan, "val_acc": math.nan,
               "radius": model_radius(model), "zero_logit_frac": tr["zero_logit_frac"],
               "confidence": tr["confidence"], "logit_grad_norm": tr["logit_grad_norm"]}
        if has_val:
            va = evaluate(model, X_val, y_val)
            row["val_loss"], row["val_acc"] = va["loss"], va["accuracy"]
        row["diverged"] = not math.isfinite(tr["loss"])
        rows.append(row)
        return row["diverged"]

    step = 0
    stop = record(0)
    model.train()
    for _ in range(int(epochs)):
        if stop:
            break
        order = (torch.arange(n, device=device) if optimizer == "gd"
                 else torch.randperm(n, generator=gen).to(device))
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            opt.zero_grad(set_to_none=False)
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            if fixed_radius:
                _project_out_radial(params)
            opt.step()
            if fixed_radius:
                _renormalize(params, r0)
            step += 1
            if step % every == 0:
                stop = record(step)
                if stop:
                    break
    if rows[-1]["step"] != step:
        record(step)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- bookkeeping
def check_training(optimizer, lr, epochs, batch_size, n_repeats=1, lr_name="lr") -> None:
    """Validate :func:`train`'s settings (and an experiment's ``n_repeats``) up front, so that
    an experiment refuses them before its first unit runs."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
    try:  # 0 is allowed: records the initialization only
        ok = not isinstance(epochs, bool) and int(epochs) == epochs and epochs >= 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}.")
    try:  # a number, a 0-d tensor or array
        ok = not isinstance(lr, bool) and float(lr) > 0 and math.isfinite(float(lr))
    except (TypeError, ValueError, RuntimeError):
        ok = False
    if not ok:
        raise ValueError(f"{lr_name} must be finite and > 0, got {lr!r}.")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(n_repeats, "n_repeats")


def check_train_val(model: nn.Module, X, y, X_val, y_val) -> None:
    """Training and validation data a classifier ``model`` can train on: finite, of equal
    lengths, labels in ``0..n_outputs-1`` (a ``ValueError`` naming the set otherwise)."""
    for (A, b), (nx, ny) in (((X, y), ("X", "y")), ((X_val, y_val), ("X_val", "y_val"))):
        A, b = check_data(A, b, name_X=nx, name_y=ny)
        try:
            check_outputs(model, A, b)
        except ValueError as exc:
            raise ValueError(f"{ny}: {exc}" if nx == "X_val" else str(exc)) from None


def check_ratios(values, name: str = "radii") -> np.ndarray:
    """Finite positive floats as a 1-D array, or a ValueError naming ``name``."""
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0, e.g. {name}=[0.5, 1, 2]; got {values!r}.")
    return arr


def log_grid(lo: float, hi: float, step: float) -> np.ndarray:
    """``10 ** arange(lo, hi + step/2, step)``, e.g. ``log_grid(-3, 3, 0.25)`` (25 points)."""
    n = int(round((hi - lo) / step)) + 1
    return 10.0 ** np.linspace(lo, hi, n)


def point_at(model: nn.Module, scheme: str, seed: int, scale: float | None = None,
             ratio: float | None = None, reference: str | None = None) -> nn.Module:
    """A copy of ``model`` initialized with ``scheme`` from ``seed`` and then rescaled.

    ``scale`` multiplies the whole draw by one factor (Vysogorets et al.'s alpha);
    ``ratio`` instead rescales it globally to ``ratio * r_ref`` (Fort & Scherlis), with
    ``r_ref = reference_radius(model, reference or scheme)``.
    """
    if reference is not None and reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}.")
    net = copy.deepcopy(model)
    init_weights_(net, scheme, generator=torch.Generator().manual_seed(int(seed)))
    if ratio is not None:
        rescale_(net, float(ratio) * reference_radius(net, reference or scheme))
    elif scale is not None:
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(float(scale))
    return net


class Units:
    """Units of work with stable ids: skip the ``done`` ones, report finished ones at once.

    Every row of a unit carries ``unit`` (its id) and ``unit_rows`` (how many rows the
    unit wrote), so a reader can tell complete units from a partly written one. With
    ``columns``, every row is checked against (and filled out to) that fixed list, so
    rows of different units can be appended to one CSV.
    """

    def __init__(self, ids, done=None, on_result=None, progress=True, desc="units",
                 columns=None):
        self.ids = [str(u) for u in ids]
        self.done = set() if done is None else {str(u) for u in done}
        self.on_result = on_result
        self.columns = None if columns is None else list(columns)
        self.rows: list[dict] = []
        self.todo = [u for u in self.ids if u not in self.done]
        self.bar = tqdm(total=len(self.todo), disable=not progress, desc=desc, unit="run")

    def pending(self, uid) -> bool:
        return str(uid) not in self.done

    def finish(self, uid, rows: list[dict]) -> None:
        rows = [{"unit": str(uid), "unit_rows": len(rows), **r} for r in rows]
        if self.columns is not None:
            extra = sorted({k for r in rows for k in r} - set(self.columns))
            if extra:
                raise RuntimeError(f"rows have keys {extra} missing from the column list")
            rows = [{c: r.get(c, math.nan) for c in self.columns} for r in rows]
        self.rows.extend(rows)
        if self.on_result is not None:
            self.on_result(rows)
        self.bar.update(1)

    def frame(self) -> pd.DataFrame:
        self.bar.close()
        return pd.DataFrame(self.rows, columns=self.columns)
