"""What an estimator is measured on: the plain torch module at its current point, the data
as that module sees them and the loss implied by its criterion. Shared by the probe, the
callbacks and ``lr="auto"``; it works on any skorch net, Pipeline or torch module by their
attributes (duck typing), so it needs nothing from the estimators above it.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from torch import nn

from ._subspace import SubspaceModule
from ._validation import check_data

__all__ = ["LogProbabilities", "callback_data", "loss_of_criterion", "resolve", "train_part"]


def _array_like(a) -> bool:
    return torch.is_tensor(a) or isinstance(a, np.ndarray)


def train_part(net, dataset_train, current):
    """The data the net trains on: with a ``train_split``, the training part of the split
    (skorch passes the unsplit data to ``on_train_begin``). Data skorch cannot unpack into
    arrays (a dict, a custom Dataset) stay as they are."""
    if getattr(net, "train_split", None) is None or dataset_train is None:
        return current
    from skorch.utils import data_from_dataset

    try:
        X, y = data_from_dataset(dataset_train)
    except (AttributeError, TypeError, ValueError):
        return current
    if not _array_like(X) or not (y is None or _array_like(y)):
        return current

    def as_np(a):
        return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)

    return as_np(X), None if y is None else as_np(y)


def callback_data(net, X, y, seen):
    """``(X, y)`` as the module sees them: given data are prepared by the net, data seen at
    ``on_train_begin`` already were."""
    if X is None:
        return seen
    if not hasattr(net, "_prepare_xy"):  # a plain skorch net
        return np.asarray(X), y
    if y is None:  # inputs only (ZeroLogitTracker)
        net.check_is_fitted()
        return net._validate_X(X)[0], None
    return net._prepare_xy(X, y)


class LogProbabilities(nn.Module):
    """Logits ``log p`` for a module returning probabilities (skorch's NLLLoss nets)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return torch.log(self.module(x))


def loss_of_criterion(criterion, y) -> str:
    """``"cross_entropy"`` or ``"mse"`` for a criterion that is exactly goldisk's mean loss;
    a ``ValueError`` naming the option otherwise (the Hessian would be another loss's)."""
    if isinstance(criterion, nn.CrossEntropyLoss | nn.NLLLoss):
        loss, plain = "cross_entropy", "plain mean cross-entropy"
        labels = np.asarray(y.cpu() if torch.is_tensor(y) else y)
        options = {"weight": criterion.weight is not None,
                   "label_smoothing": getattr(criterion, "label_smoothing", 0.0) != 0.0,
                   "ignore_index": bool(np.any(labels == criterion.ignore_index))}
    elif isinstance(criterion, nn.MSELoss):
        loss, plain, options = "mse", "plain mean squared error", {}
    else:
        raise ValueError(
            f"cannot infer the loss from criterion {criterion!r}; pass loss='cross_entropy' "
            "or loss='mse' to the probe."
        )
    options["reduction"] = criterion.reduction != "mean"
    changed = [f"{k}={getattr(criterion, k)!r}" for k, on in options.items() if on]
    if changed:
        raise ValueError(
            f"criterion {type(criterion).__name__}({', '.join(changed)}) is not the {plain} "
            f"that goldisk differentiates exactly, so its curvature is another loss's; pass "
            f"loss={loss!r} to the probe to measure the {plain} anyway."
        )
    return loss


def resolve(estimator, X, y, prepared=False, loss="auto"):
    """``(module, X, y, loss)`` as measured: the plain torch module at the estimator's
    current point, the data it sees, and the loss (``loss`` unless ``"auto"``, else the one
    implied by the estimator's criterion, or None for a plain module).
    ``prepared=True``: ``(X, y)`` already are what the module sees (e.g. in a callback)."""
    if isinstance(estimator, Pipeline):
        return resolve(estimator[-1], estimator[:-1].transform(X), y, loss=loss)
    if hasattr(estimator, "_measured_estimator"):  # a GoldilocksSelector: its best net
        return resolve(estimator._measured_estimator(), X, y, loss=loss)
    if isinstance(estimator, nn.Module):
        X, y = check_data(X, y)
        return estimator, X, y, None if loss == "auto" else loss
    if hasattr(estimator, "module_") or hasattr(estimator, "initialized_"):  # skorch net
        estimator.check_is_fitted()
        if prepared:
            X, y = check_data(X, y)
        elif hasattr(estimator, "_prepare_xy"):
            X, y = estimator._prepare_xy(X, y)
        else:
            X, y = check_data(X, y)
            X = X if torch.is_tensor(X) else np.asarray(X, dtype=np.float64)
        module = estimator.module_
        if isinstance(module, SubspaceModule):
            module = module.materialize()
        criterion = getattr(estimator, "criterion_", None)
        if loss == "auto":
            loss = loss_of_criterion(criterion, y)
        if isinstance(criterion, nn.NLLLoss):
            module = LogProbabilities(module)
        return module, X, y, loss
    raise ValueError(
        "estimator must be a goldisk or skorch net, a Pipeline ending in one, a fitted "
        f"GoldilocksSelector or a torch.nn.Module; got {type(estimator).__name__}."
    )
