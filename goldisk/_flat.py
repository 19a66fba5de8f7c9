"""Flat parameter vectors and the functional view of a module used by every engine path."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["ParamLayout", "parameter_vector", "trainable_parameters"]


def trainable_parameters(module: nn.Module, weights_only: bool = False) -> list:
    """``(name, parameter)`` of the parameters of ``module`` that require gradients.

    These make up goldisk's parameter vector ``w``: frozen parameters
    (``requires_grad=False``) are constants of the function, as for an optimizer. The order
    is ``named_parameters()``, so a parameter shared by several layers appears once, under
    its first name. ``weights_only=True`` keeps the tensors with at least two dimensions
    (weight matrices and kernels, whatever their name), dropping biases and normalization
    scales and shifts.
    """
    return [(name, p) for name, p in module.named_parameters()
            if p.requires_grad and (not weights_only or p.dim() > 1)]


class ParamLayout:
    """Names, shapes and offsets of a module's trainable parameters in one flat vector.

    The parameters are those of :func:`trainable_parameters` (``requires_grad=True``), in
    ``module.named_parameters()`` order; ``unflatten`` gives views of a flat
    vector (batched leading dimensions are allowed), and ``call`` evaluates the module
    at a flat vector with :func:`torch.func.functional_call`, so it composes with
    ``vmap``, ``grad`` and ``jvp``.
    """

    def __init__(self, module: nn.Module, names=None):
        params = dict(trainable_parameters(module))
        self.names = list(params) if names is None else list(names)
        self.shapes = [tuple(params[n].shape) for n in self.names]
        self.numels = [math.prod(s) for s in self.shapes]
        self.D = int(sum(self.numels))

    def unflatten(self, w: torch.Tensor) -> dict:
        out, start = {}, 0
        batch = w.shape[:-1]
        for name, shape, n in zip(self.names, self.shapes, self.numels, strict=True):
            out[name] = w[..., start : start + n].reshape(*batch, *shape)
            start += n
        return out

    def call(self, module: nn.Module, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(module, self.unflatten(w), (x,))

    @torch.no_grad()
    def assign_(self, module: nn.Module, w: torch.Tensor) -> nn.Module:
        """Copy the flat vector ``w`` into the parameters of ``module`` (in place)."""
        params = dict(module.named_parameters())
        for name, value in self.unflatten(w).items():
            params[name].copy_(value)
        return module

    def slices(self):
        """``(name, slice)`` of each parameter in the flat vector."""
        start = 0
        for name, n in zip(self.names, self.numels, strict=True):
            yield name, slice(start, start + n)
            start += n


def parameter_vector(module: nn.Module, weights_only: bool = False) -> torch.Tensor:
    """The trainable parameters of ``module`` (:func:`trainable_parameters`) as one
    detached flat vector; ``weights_only=True`` keeps only the tensors with at least two
    dimensions (weight matrices and kernels): no biases, no normalization scales."""
    parts = [p.detach().reshape(-1) for _, p in trainable_parameters(module, weights_only)]
    if not parts:
        what = "tensor with two or more dimensions" if weights_only else "parameter"
        if next(module.parameters(), None) is None:
            raise ValueError(f"module has no parameters to measure; pass a module with at "
                             f"least one trainable {what}.")
        raise ValueError(
            f"module has no trainable {what} to measure (parameters with "
            "requires_grad=False are constants); pass a module with at least one, or "
            "unfreeze it with p.requires_grad_(True)."
        )
    return torch.cat(parts)
