"""Flat parameter vectors and the functional view of a module used by every engine path."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["ParamLayout", "parameter_vector"]


class ParamLayout:
    """Names, shapes and offsets of a module's trainable parameters in one flat vector.

    The order is ``module.named_parameters()``; ``unflatten`` gives views of a flat
    vector (batched leading dimensions are allowed), and ``call`` evaluates the module
    at a flat vector with :func:`torch.func.functional_call`, so it composes with
    ``vmap``, ``grad`` and ``jvp``.
    """

    def __init__(self, module: nn.Module, names=None):
        params = dict(module.named_parameters())
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

    def slices(self):
        """``(name, slice)`` of each parameter in the flat vector."""
        start = 0
        for name, n in zip(self.names, self.numels, strict=True):
            yield name, slice(start, start + n)
            start += n


def parameter_vector(module: nn.Module, weights_only: bool = False) -> torch.Tensor:
    """All parameters of ``module`` as one detached flat vector.

    ``weights_only=True`` keeps only tensors named ``weight`` of layers with more than one
    dimension (Linear, Conv), i.e. drops biases and normalization scales.
    """
    parts = [
        p.detach().reshape(-1)
        for name, p in module.named_parameters()
        if not weights_only or (name.rsplit(".", 1)[-1] == "weight" and p.dim() > 1)
    ]
    if not parts:
        raise ValueError(
            "module has no parameters to measure; pass a module with at least one "
            "trainable (weights_only=False) or weight (weights_only=True) tensor."
        )
    return torch.cat(parts)
