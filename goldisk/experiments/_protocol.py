"""The protocol the experiments share: one object of training settings, one of run hooks.

An experiment builds both once from its keywords (``training=`` and/or the old keywords
``optimizer``, ``lr``, ``epochs``, ``batch_size``, ``dtype``, ``device``;
``random_state``, ``progress``, ``done``, ``on_result``); they are validated here, once,
and the loops below trust them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from .._radius import REFERENCES
from .._run import RunHooks, run_hooks
from ._training import Units, check_training, train

__all__ = ["Training", "RunHooks", "protocol", "check_reference", "units_of"]


@dataclass(frozen=True)
class Training:
    """Settings of :func:`goldisk.experiments.train` an experiment trains with.

    Parameters
    ----------
    optimizer : {"adam", "sgd", "gd"}, default="adam"
    lr : float, default=1e-3
    epochs : int, default=10
        0 records the initialization only.
    batch_size : int, default=64
    dtype : torch.dtype, default=torch.float32
    device : torch.device or str, optional

    Examples
    --------
    >>> Training(lr=3e-2).lr
    0.03
    >>> Training(optimizer="lbfgs")
    Traceback (most recent call last):
    ValueError: optimizer must be one of ('adam', 'sgd', 'gd'), got 'lbfgs'.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 64
    dtype: torch.dtype = torch.float32
    device: object = None

    def __post_init__(self):
        check_training(self.optimizer, self.lr, self.epochs, self.batch_size)

    def fit(self, model, X, y, X_val, y_val, *, random_state, **overrides):
        """:func:`train` ``model`` with these settings (``overrides`` win, e.g. ``lr``)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return train(model, X, y, X_val, y_val, random_state=random_state,
                     **{**kw, **overrides})


TRAINING_NAMES = tuple(f.name for f in fields(Training))


def protocol(owner: str, training, kwargs: dict, **defaults) -> tuple[Training, RunHooks]:
    """``(training, hooks)`` of an experiment called as ``owner(..., training, **kwargs)``.

    ``defaults`` are the experiment's own defaults of :class:`Training`'s fields (used when
    ``training`` is None); keywords among ``kwargs`` override ``training``'s fields.
    """
    given = {k: v for k, v in kwargs.items() if k in TRAINING_NAMES}
    hooks = run_hooks(owner, kwargs, allowed=TRAINING_NAMES)
    if training is None:
        return Training(**{**defaults, **given}), hooks
    if not isinstance(training, Training):
        raise TypeError(f"training must be a goldisk.experiments.Training or None, got "
                        f"{type(training).__name__}.")
    return (replace(training, **given) if given else training), hooks


def check_reference(reference) -> str:
    """``reference`` if it names a reference scheme, else a ``ValueError`` naming them."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}.")
    return reference


def units_of(hooks: RunHooks, ids, desc: str, columns) -> Units:
    """The :class:`Units` of a run with ``hooks`` (skip ``done``, stream to ``on_result``)."""
    return Units(ids, hooks.done, hooks.on_result, hooks.progress, desc=desc, columns=columns)
