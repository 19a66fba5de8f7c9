"""``goldisk.callbacks.SharpnessTracker``: the full-space ``lambda_max`` during training.

Exported by ``goldisk.callbacks``; in a module of its own to keep that one short. It needs
only the engine and ``goldisk._measured`` (what a net is measured on), nothing from the
estimators.
"""
from __future__ import annotations

import numbers

from skorch.callbacks import Callback

from ._measured import callback_data, resolve, train_part

__all__ = ["SharpnessTracker", "MeasuringCallback"]


class MeasuringCallback(Callback):
    """What the trackers that measure on data share: ``X`` and ``y`` both or neither
    (then the training part of the net's split, taken at the first epoch), held during
    ``fit`` only (a fitted net does not carry a copy of the training data); measured
    every ``every`` epochs."""

    def __init__(self, every=1, X=None, y=None):
        self.every = every
        self.X = X
        self.y = y

    def _check_data(self) -> None:
        if (self.X is None) != (self.y is None):
            raise ValueError(f"{type(self).__name__} needs both X and y (data to measure "
                             "on), or neither (the training data).")

    def _take_data(self, net, X, y) -> None:
        self.data_ = callback_data(net, self.X, self.y, (X, y))
        self.split_taken_ = self.X is not None

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        if not self.split_taken_:  # once per fit: the training part of a train_split
            self.data_, self.split_taken_ = train_part(net, dataset_train, self.data_), True

    def on_train_end(self, net, **kwargs):
        self.data_ = None


class SharpnessTracker(MeasuringCallback):
    """Record the full-space ``lambda_max`` of the loss Hessian every ``every`` epochs.

    Full-batch gradient descent is stable only while ``lr < 2 / lambda_max`` (Cohen et al.
    2021, the edge of stability); ``lambda_max`` comes from :func:`goldisk.top_eigenvalues`
    (Lanczos on Hessian-vector products over ``(X, y)`` or the training data, float64).
    Epochs in between get no entry. With ``record_edge`` the key ``name + "_edge"`` also
    gets ``lr * lambda_max / 2`` (above 1: past the stability threshold of plain GD).

    Parameters
    ----------
    every : int, default=1
    X, y : array-like, optional
        Data to measure on (labels as given to the net); default: the training data.
    name : str, default="lambda_max"
    operator : {"hessian", "ggn"}, default="hessian"
    max_samples : int or None, default=1000
        The first ``max_samples`` samples are used (``None``: all); each Lanczos product
        is a pass over them.
    tol : float, default=1e-6
        Lanczos tolerance (relative residual).
    record_edge : bool, default=False
    random_state : None or int, default=0
        Seeds Lanczos' starting vector.
    """

    def __init__(self, every=1, X=None, y=None, name="lambda_max", operator="hessian",
                 max_samples=1000, tol=1e-6, record_edge=False, random_state=0):
        super().__init__(every, X, y)
        self.name = name
        self.operator = operator
        self.max_samples = max_samples
        self.tol = tol
        self.record_edge = record_edge
        self.random_state = random_state

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self._check_data()
        for name in ("every", "max_samples"):
            v = getattr(self, name)
            if name == "max_samples" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}.")
        if self.operator not in ("hessian", "ggn"):
            raise ValueError(f"operator must be 'hessian' or 'ggn', got {self.operator!r}.")
        self._take_data(net, X, y)

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) % self.every:
            return
        from .curvature import top_eigenvalues

        X, y = self.data_
        if self.max_samples is not None:
            X, y = X[: self.max_samples], y[: self.max_samples]
        module, X, y, loss = resolve(net, X, y, prepared=True)
        modes = [(m, m.training) for m in module.modules()]
        module.eval()
        try:
            lam = float(top_eigenvalues(module, X, y, 1, operator=self.operator,
                                        loss=loss or "cross_entropy", tol=self.tol,
                                        random_state=self.random_state)[0])
        finally:
            for m, mode in modes:
                m.training = mode
        net.history.record(self.name, lam)
        if self.record_edge:
            net.history.record(self.name + "_edge", float(net.lr) * lam / 2)
