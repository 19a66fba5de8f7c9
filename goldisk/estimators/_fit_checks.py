"""Fit-time checks of the goldisk nets: the init scaler in the target dtype, trainable
parameters, the module's output type, and fixes for errors torch raises while training."""

from __future__ import annotations

import contextlib
import copy

import torch

from .._checks import check_bool, check_real, training_hint
from .._rng import torch_generator

__all__ = ["_apply_scaler", "check_net_params", "check_trainable", "check_output_type",
           "training_hints"]


def _apply_scaler(scaler, module, dtype, seed):
    """Draw the init in the module's own dtype (the same init for any dtype), then cast,
    then rescale in ``dtype``: rescaled in float32 before the cast, radius 1e-50 left every
    weight at 0 and 1e39 gave NaN weights, silently."""
    from ..models import init_weights_

    if scaler._scheme() is not None:
        init_weights_(module, scaler._scheme(), generator=torch_generator(seed))
    keep = copy.copy(scaler)
    keep.init = "keep"
    if 1.0 / float(scaler.temperature) > torch.finfo(dtype).max:
        raise ValueError(f"init_scaler__temperature={scaler.temperature!r} divides the logits "
                         f"by less than 1/{torch.finfo(dtype).max:.1e}, which overflows "
                         f"{dtype}; pass a larger temperature (or dtype='float64').")
    try:
        out = keep._apply(module.to(dtype))  # (validated once, by the net)
    except ValueError as exc:
        raise ValueError(f"init_scaler__radius={scaler.radius!r}: {exc}") from None
    # (a path that scales in place without rescale_'s check, e.g. reference="current" with
    # mode="per_layer", must not leave zero or non-finite weights either)
    values = [p.detach() for p in out.parameters() if p.requires_grad]
    if any(not bool(torch.isfinite(v).all()) for v in values) or all(
            not bool(v.any()) for v in values):
        raise ValueError(f"init_scaler__radius={scaler.radius!r} cannot be represented in "
                         f"{dtype}: the weights under- or overflow; pass dtype='float64' or "
                         "a radius closer to 1.")
    return out



def check_net_params(net) -> None:
    """Type checks of skorch's own parameters that skorch leaves to Python's truthiness
    (``warm_start="no"`` would be true) or to torch (``lr="0.1"``: Adam's TypeError)."""
    check_bool(net.warm_start, "warm_start")
    if net.lr is None or (isinstance(net.lr, str) and net.lr == "auto"):
        return
    try:
        check_real(net.lr, "lr", positive=True)
    except TypeError as exc:  # the two non-numbers that are valid, named in the message
        raise TypeError(f"{str(exc).rstrip('.')}; lr='auto' (the rate suggest_lr measures "
                        "at init) and lr=None (the default rule) are the other choices.") \
            from None


def check_trainable(module, max_epochs) -> None:
    """Training a module whose parameters are all frozen fails inside torch ("element 0 of
    tensors does not require grad"): refuse it first."""
    if max_epochs and not any(p.requires_grad for p in module.parameters()):
        raise ValueError("every parameter of the module is frozen (requires_grad=False): "
                         "there is nothing to train; unfreeze some with "
                         "p.requires_grad_(True), or pass max_epochs=0.")


def check_output_type(out, criterion, standard: bool) -> None:
    """A module returning ``(logits, aux)`` fails inside the standard losses."""
    if standard and not torch.is_tensor(out):
        raise ValueError(f"module returns a {type(out).__name__}, not one tensor of "
                         f"outputs; {type(criterion).__name__} needs the outputs alone: "
                         "make forward return them (e.g. out[0] of (logits, aux)).")


@contextlib.contextmanager
def training_hints():
    """Add the fix to an error torch raises while training (see ``training_hint``)."""
    try:
        yield
    except (RuntimeError, ValueError) as exc:
        hint = training_hint(exc)
        if hint is None:
            raise
        raise ValueError(f"{exc}: {hint}") from None
