"""Flat parameter vectors and the functional view of a module used by every engine path."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["NORM_LAYERS", "ParamLayout", "frozen", "parameter_vector", "tensor_sources",
           "trainable_parameters", "safe_norm", "nonfinite_parameters"]


#: Normalization layers: their affine scale starts at 1 and their shift at 0.
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def tensor_sources(layer: nn.Module, name: str) -> list:
    """The tensors that hold ``layer.<name>``: the parameter (or buffer) itself, or the
    original(s) of a parametrization (``layer.weight`` is then recomputed at each access,
    so only its originals identify it)."""
    parametrizations = getattr(layer, "parametrizations", None)
    if parametrizations is not None and name in parametrizations:
        return list(parametrizations[name].parameters())
    t = getattr(layer, name, None)
    return [t] if isinstance(t, torch.Tensor) else []


def frozen(sources: list) -> bool:
    """Whether every source is a parameter with ``requires_grad=False`` (a constant of the
    measured function; a plain tensor in a parameter's place, as in a SubspaceModule, is
    not frozen)."""
    return bool(sources) and all(isinstance(t, nn.Parameter) and not t.requires_grad
                                 for t in sources)


def trainable_parameters(module: nn.Module, weights_only: bool = False) -> list:
    """``(name, parameter)`` of the parameters of ``module`` that require gradients.

    These make up goldisk's parameter vector ``w``: frozen parameters
    (``requires_grad=False``) are constants of the function, as for an optimizer. The order
    is ``named_parameters()``, so a parameter shared by several layers appears once, under
    its first name. ``weights_only=True`` keeps the weight matrices and kernels: tensors
    with at least two dimensions, whatever their name (``in_proj_weight``,
    ``weight_ih_l0``), except biases (names starting with ``bias``) and the parameters of
    normalization layers (their scales and shifts, even when multi-dimensional).
    """
    if weights_only:
        norm = {id(p) for m in module.modules() if isinstance(m, NORM_LAYERS)
                for p in m.parameters()}
    return [(name, p) for name, p in module.named_parameters()
            if p.requires_grad and (not weights_only or (
                p.dim() > 1 and id(p) not in norm
                and not name.rsplit(".", 1)[-1].startswith("bias")))]


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
        # Every place of each parameter: each (module, attribute) holding it, a module used
        # twice counted once (under its first path), buffers included. ``call`` passes them all with
        # ``tie_weights=False``: torch's own tie handling swaps a module used twice twice,
        # and with a parameter also tied to another layer it restores the wrong tensor (torch
        # 2.14: the caller's tie is broken and the values are wrong).
        first = {id(p): n for n, p in module.named_parameters()}
        wanted = set(self.names)
        self._places: dict[str, list[str]] = {}
        for path, sub in module.named_modules():
            # a buffer that is the parameter itself (register_buffer("a", layer.weight)) is
            # one of its places too
            for leaf, p in (*sub._parameters.items(), *sub._buffers.items()):
                if p is not None and first.get(id(p)) in wanted:
                    place = f"{path}.{leaf}" if path else leaf
                    self._places.setdefault(first[id(p)], []).append(place)

    def bind(self, values: dict) -> dict:
        """``{place: values[name]}`` for every place of each parameter (see ``call``)."""
        return {place: values[name] for name in self.names for place in self._places[name]}

    def unflatten(self, w: torch.Tensor) -> dict:
        out, start = {}, 0
        batch = w.shape[:-1]
        for name, shape, n in zip(self.names, self.shapes, self.numels, strict=True):
            out[name] = w[..., start : start + n].reshape(*batch, *shape)
            start += n
        return out

    def call(self, module: nn.Module, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(module, self.bind(self.unflatten(w)), (x,), tie_weights=False)

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


def safe_norm(w: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """``||w||_2`` over ``dim``, free of overflow and underflow in every dtype.

    ``w`` is divided by its largest entry before squaring (a constant of the derivative,
    so the gradient is still ``w / ||w||``): the plain sum of squares underflows for tiny
    vectors (float64 weights x 1e-200 read 0.0, float32 ``1e-22 r_ref`` 15% short) and
    overflows for huge ones (x 1e160 read inf). A plain sum rather than ``vector_norm``:
    in float32 on the CPU the latter was 2.6e-4 off at D = 11M, the sum 2.8e-8. An
    all-zero vector has norm 0; a NaN entry gives NaN, an infinite one inf.
    """
    m = w.detach().abs().amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).clamp_min(
        torch.finfo(w.dtype).tiny)
    n = m * (w / m).square().sum(dim=dim, keepdim=True).sqrt()
    return n if keepdim else n.squeeze(dim)


def nonfinite_parameters(module: nn.Module) -> list[str]:
    """Names of the parameters of ``module`` (trainable or not) holding NaN or inf."""
    return [name for name, p in module.named_parameters()
            if p.is_floating_point() and not bool(torch.isfinite(p.detach()).all())]
