"""The model and data as the curvature engines read them: the model in the working dtype
and device (a private copy only when needed, with warnings for layers whose output depends
on their mode), and the dataset in mini-batches of tensors. Shared by every engine
(subspace Hessian, Hutchinson, model state, the Lanczos operator) below them all."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .._validation import (
    check_data,
    check_float_dtype,
    check_model,
    check_outputs,
    deterministic,
    mode_dependent,
    model_device,
)

__all__ = ["batches", "prepare_model", "checked_inputs", "curvature_inputs"]


def checked_inputs(model: nn.Module, X, y, dtype, device):
    """``(X, y, dtype, device)`` at a curvature engine's entry, checked once: the dtype,
    the model, the data (sparse, empty, non-finite X refused; strides normalized) and
    the device (default: the model's)."""
    dtype = check_float_dtype(dtype)
    check_model(model)
    X, y = check_data(X, y)
    return X, y, dtype, model_device(model, device)


def curvature_inputs(model: nn.Module, X, y, loss: str, dtype, device):
    """``(net, X, y, integer_input, dtype, device)``: :func:`checked_inputs`, the model's
    outputs checked against ``y``, and ``net`` the model prepared in the dtype and on the
    device (:func:`prepare_model`, its dropout-like layers made deterministic)."""
    X, y, dtype, device = checked_inputs(model, X, y, dtype, device)
    integer_input = check_outputs(model, X, y, loss)
    net = deterministic(prepare_model(model, dtype, device), model)
    return net, X, y, integer_input, dtype, device


def prepare_model(model: nn.Module, dtype, device, curvature: bool = True) -> nn.Module:
    """``model`` in ``dtype`` on ``device`` (a copy if needed); warns when it has layers
    that are random or update buffers in training mode (:func:`mode_dependent`) and, for a
    ``curvature`` computation, when a normalization layer's running statistics were never
    updated (one warning per probe: ``model_state`` passes ``curvature=False``)."""
    names = mode_dependent(model)
    if names:
        shown = ", ".join(repr(n or type(model).__name__) for n in names[:3])
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        warnings.warn(
            f"model has layers in training mode that are random or update their buffers "
            f"when called ({shown}{more}): they are measured in eval mode, on a private "
            "copy. Call model.eval() first to silence this warning.",
            UserWarning,
            stacklevel=3,
        )
    fresh = [name for name, m in model.named_modules()
             if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None
             and bool((m.running_mean == 0).all()) and bool((m.running_var == 1).all())
             ] if curvature else []
    if fresh:
        warnings.warn(
            f"normalization layers {', '.join(map(repr, fresh[:3]))}"
            f"{' and more' if len(fresh) > 3 else ''} have never run in training mode: their "
            "running statistics are still 0 and 1, so in eval mode they normalize "
            "nothing and the curvature is that of the network without normalization. Fit "
            "the model (or run it on data in training mode) first to measure the normalized "
            "network.",
            UserWarning,
            stacklevel=3,
        )
    return _on(model, dtype, device)


def _on(module: nn.Module, dtype, device) -> nn.Module:
    """``module`` itself when all its tensors already have ``dtype`` and ``device`` (it is
    only read, never modified), else a converted copy (the caller's module is untouched)."""
    device = torch.device(device)

    def same(dev):
        return dev.type == device.type and (device.index is None or dev.index == device.index)

    tensors = list(module.parameters()) + list(module.buffers())
    if all(same(t.device) for t in tensors) and all(
        t.dtype == dtype for t in tensors if t.is_floating_point()
    ):
        return module
    return copy.deepcopy(module).to(device=device, dtype=dtype)


def batches(X, y, batch_size: int, dtype, device, integer_input: bool = False):
    """Yield ``(xb, yb)`` tensors on ``device``: ``xb`` in ``dtype`` (``torch.long`` with
    ``integer_input``, see ``check_outputs``); floating ``y`` (regression) gets ``dtype``."""
    n = len(X)
    x_dtype = torch.long if integer_input else dtype
    for start in range(0, n, batch_size):
        xb = torch.as_tensor(X[start : start + batch_size]).to(device=device, dtype=x_dtype)
        yb = torch.as_tensor(y[start : start + batch_size]).to(device=device)
        if yb.is_floating_point():
            yb = yb.to(dtype)
        yield xb, yb
