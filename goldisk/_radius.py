"""Radius of a network in parameter space, reference radii of common inits, and rescaling.

Fort & Scherlis (2019) observe that Gaussian initializations put the weights on a thin
shell of radius ``r = ||w||_2``; the Goldilocks zone is a thick shell of such radii. This
module measures ``r``, computes the reference radius ``r_ref`` of an init scheme from the
layer shapes alone, and moves a network to a target radius.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ._checks import check_bool, check_real
from ._flat import (
    NORM_LAYERS,
    frozen,
    nonfinite_parameters,
    parameter_vector,
    safe_norm,
    tensor_sources,
    trainable_parameters,
)
from ._names import REFERENCES

__all__ = [
    "REFERENCES",
    "radius",
    "reference_radius",
    "layer_reference_radii",
    "rescale_",
    "rescale_trusted",
    "SoftmaxTemperature",
]

#: The layers with a reference init: fan-in and fan-out come from their weight's shape.
REFERENCE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _variance(scheme: str, fan_in: int, fan_out: int) -> float:
    if scheme == "xavier":
        return 2.0 / (fan_in + fan_out)
    if scheme == "he":
        return 2.0 / fan_in
    if scheme == "lecun":
        return 1.0 / fan_in
    if scheme == "default":  # kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        return 1.0 / (3.0 * fan_in)
    raise ValueError(f"reference must be one of {REFERENCES}, got {scheme!r}.")


def radius(module: nn.Module, weights_only: bool = False) -> float:
    """Euclidean norm of the trainable parameters of ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        Its parameters with ``requires_grad=True``, each once (a shared weight counts
        once); frozen parameters and buffers are not part of the radius.
    weights_only : bool, default=False
        Measure only the tensors with two or more dimensions (weight matrices and kernels,
        whatever their name): no biases, no normalization scales.

    The norm is a scaled sum of squares in float64: exact for weights of any magnitude
    the dtype holds (a plain ``norm`` reads 0 below about 1e-154 and inf above 1e154). A
    parameter holding NaN or inf gives NaN or inf with a ``RuntimeWarning`` naming it.

    Examples
    --------
    >>> lin = torch.nn.Linear(3, 4, bias=False)
    >>> _ = torch.nn.init.ones_(lin.weight)
    >>> radius(lin)
    3.4641016151377544
    """
    weights_only = check_bool(weights_only, "weights_only")
    value = float(safe_norm(parameter_vector(module, weights_only).double()))
    if not math.isfinite(value):
        bad = nonfinite_parameters(module)
        warnings.warn(f"radius is {value}: parameter(s) {', '.join(bad[:3])} hold NaN or "
                      "infinite values.", RuntimeWarning, stacklevel=2)
    return value


def _scale_(p: torch.Tensor, factor: float) -> None:
    """``p *= factor`` with the product formed in float64 (a float32 ``factor`` of 1e-40
    would itself be subnormal), then rounded once to ``p``'s dtype."""
    if p.dtype == torch.float64 or not p.is_floating_point():
        p.mul_(factor)
    else:
        p.copy_(p.double().mul_(factor))


def _combine(norms) -> float:
    """``sqrt(sum n_i^2)`` of non-negative floats without under- or overflow."""
    norms = list(norms)
    m = max(norms, default=0.0)
    if m == 0 or not math.isfinite(m):
        return m
    return m * math.sqrt(math.fsum((n / m) ** 2 for n in norms))


def _check_representable(tensors, factor: float, target: float) -> None:
    """Refuse a rescale by ``factor`` whose result the tensors' dtype cannot hold: each
    tensor is scaled in that dtype (a copy, one tensor at a time) and the norm of the
    result must come out as the exact one to 1e-3 (a float32 module sent to 1e40 would read
    inf, to 1e-46 read 0)."""
    for dtype in {t.dtype for t in tensors}:
        group = [t.detach() for t in tensors if t.dtype == dtype]
        want = factor * _combine(float(safe_norm(t.double().reshape(-1))) for t in group)
        got = _combine(float(safe_norm((t.double() * factor).to(dtype).double().reshape(-1)))
                       for t in group)
        if want > 0 and not (math.isfinite(got) and abs(got - want) <= 1e-3 * want):
            info = torch.finfo(dtype)
            raise ValueError(
                f"target radius {target:g} cannot be represented in {dtype}: the parameters "
                f"would {'overflow' if not got < want else 'underflow'} (entries must stay "
                f"within [{info.tiny:.1e}, {info.max:.1e}]); convert the module to float64 "
                "first (module.double(), or dtype='float64' for an estimator) or choose a "
                "radius within that range."
            )


def layer_reference_radii(module: nn.Module, reference: str = "xavier") -> dict[str, float]:
    """Expected radius of each Linear/Conv layer's parameters under ``reference``.

    For a weight with ``n`` entries drawn with variance ``sigma^2`` the radius concentrates
    at ``sqrt(n) * sigma`` (Fort & Scherlis, Sec. 2.2). Biases are zero under Xavier, He
    and LeCun; under PyTorch's ``"default"`` init they are uniform with the weights'
    bound and are included. Keys are ``named_modules`` names. Layers with a frozen weight
    (``requires_grad=False``) are not counted, and a weight shared by several layers is
    counted once, with the first layer that uses it. (Weights held as buffers, as in a
    :class:`~goldisk.SubspaceModule`, are counted.)

    Examples
    --------
    >>> lin = torch.nn.Linear(100, 50)
    >>> round(layer_reference_radii(lin, "he")[""], 6)  # sqrt(5000 * 2 / 100)
    10.0
    """
    out = _layer_radii(module, reference)
    if not out:
        raise ValueError(
            "module has no trainable Linear or Conv layer, so no reference radius can be "
            "computed from layer shapes; use reference='current' (the module's own radius) "
            "instead."
        )
    return out


def _layer_radii(module: nn.Module, reference: str) -> dict[str, float]:
    _variance(reference, 1, 1)  # validate early
    out, seen = {}, set()
    for name, layer in module.named_modules():
        sources = tensor_sources(layer, "weight")
        if not isinstance(layer, REFERENCE_LAYERS) or frozen(sources) or any(
                id(t) in seen for t in sources):
            continue
        seen.update(id(t) for t in sources)
        weight = layer.weight
        fan_in, fan_out = _fans(weight)
        var = _variance(reference, fan_in, fan_out)
        sq = weight.numel() * var
        bias = tensor_sources(layer, "bias")
        if reference == "default" and bias and not frozen(bias):
            sq += layer.bias.numel() * var
        out[name] = math.sqrt(sq)
    return out


def reference_radius(module: nn.Module, reference: str = "xavier") -> float:
    """Radius of a typical ``reference`` initialization of ``module`` (layers in quadrature).

    Parameters
    ----------
    module : torch.nn.Module
        Linear and Conv layers are counted with the scheme's variance; the scales of
        BatchNorm, InstanceNorm, LayerNorm and GroupNorm layers count at their initial
        value 1 (so a freshly built network with normalization sits at its reference
        radius, and ``InitScaler(radius=1.0)`` leaves both weights and scales where a
        standard initialization puts them); their shifts and other parameters start at 0.
    reference : {"xavier", "he", "lecun", "default"}
        Xavier/Glorot: ``sigma^2 = 2/(fan_in+fan_out)``; He/Kaiming: ``2/fan_in``;
        LeCun: ``1/fan_in``; PyTorch's default ``U(+-1/sqrt(fan_in))`` with biases.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(784, 200), torch.nn.ReLU(),
    ...                           torch.nn.Linear(200, 10))
    >>> round(reference_radius(net, "xavier"), 3)
    18.378
    """
    radii = _layer_radii(module, reference)
    scales = _norm_scales(module)
    if not radii and not scales:
        layer_reference_radii(module, reference)  # raises, naming the fix
    return math.sqrt(sum(r * r for r in radii.values()) + scales)


def _norm_scales(module: nn.Module) -> int:
    """Squared radius of the normalization scales at their initial value 1: their count."""
    seen, total = set(), 0
    for m in module.modules():
        sources = tensor_sources(m, "weight")
        if isinstance(m, NORM_LAYERS) and sources and not frozen(sources) and not any(
                id(t) in seen for t in sources):
            seen.update(id(t) for t in sources)
            total += m.weight.numel()
    return total


@torch.no_grad()
def rescale_(
    module: nn.Module,
    target: float,
    mode: str = "global",
    reference: str = "xavier",
    weights_only: bool = False,
) -> nn.Module:
    """Move ``module`` in place to radius ``target``.

    Parameters
    ----------
    module : torch.nn.Module
    target : float
        Target radius (absolute, in parameter-space units); must be finite and > 0.
    mode : {"global", "per_layer"}
        ``"global"`` multiplies every trainable parameter by one factor (Fort & Scherlis;
        Vysogorets et al.), keeping the direction of ``w``. ``"per_layer"`` puts each
        Linear/Conv layer (weight and bias together) on its own shell of radius
        ``target * r_ref(layer) / r_ref(net)``; other parameters are left untouched.
    reference : str
        Only used by ``mode="per_layer"`` to split ``target`` among layers.
    weights_only : bool
        For ``mode="global"``: measure and scale only the tensors with two or more
        dimensions (weights), leaving biases and normalization parameters as is.

    Frozen parameters (``requires_grad=False``) are never scaled. The scaling happens in
    the parameters' own dtype: convert the module first (``module.double()``) to reach
    radii that float32 cannot hold. A target whose scaled parameters would overflow or
    underflow that dtype (e.g. 1e39, or 1e-46, in float32) is refused with a
    ``ValueError``, as is a module with NaN or infinite parameters.

    Returns
    -------
    module : the same module, rescaled.

    Examples
    --------
    >>> net = torch.nn.Linear(10, 10)
    >>> round(radius(rescale_(net, 2.5)), 12)
    2.5
    """
    target = check_real(target, "target", finite=False)
    if not math.isfinite(target) or target <= 0:
        raise ValueError(f"target radius must be finite and > 0, got {target}.")
    weights_only = check_bool(weights_only, "weights_only")
    if mode not in ("global", "per_layer"):
        raise ValueError(f"mode must be 'global' or 'per_layer', got {mode!r}.")
    return rescale_trusted(module, target, mode, reference, weights_only)


@torch.no_grad()
def rescale_trusted(module: nn.Module, target: float, mode: str = "global",
                    reference: str = "xavier", weights_only: bool = False) -> nn.Module:
    """:func:`rescale_` for arguments already validated at a public entry (``InitScaler``
    and the nets check ``init_scaler__radius`` once, under that name). What depends on the
    module is still checked here: non-finite parameters, a radius of 0, a target the
    parameters' dtype cannot hold."""
    bad = nonfinite_parameters(module)
    if bad:
        raise ValueError(f"cannot rescale a module with NaN or infinite parameters "
                         f"({', '.join(bad[:3])}); its radius is undefined. Re-initialize "
                         "it (e.g. goldisk.models.init_weights_).")
    if mode == "global":
        current = radius(module, weights_only)
        if current == 0:
            raise ValueError("cannot rescale a module whose radius is 0; initialize it first.")
        factor = target / current
        _check_representable([p for _, p in trainable_parameters(module, weights_only)],
                             factor, target)
        for _, p in trainable_parameters(module, weights_only):
            _scale_(p, factor)
    elif mode == "per_layer":
        refs = layer_reference_radii(module, reference)
        # reference_radius(module), from the radii at hand: normalization scales included
        total = math.sqrt(sum(r * r for r in refs.values()) + _norm_scales(module))
        layers = dict(module.named_modules())
        seen, factors = set(), []  # a shared parameter is scaled once, with the first layer
        for name, ref in refs.items():
            params = [p for p in layers[name].parameters()  # (a parametrization's too)
                      if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in params)
            current = float(safe_norm(torch.cat([p.detach().double().reshape(-1)
                                                 for p in params]))) if params else 0.0
            if current == 0:
                raise ValueError(f"layer {name!r} has radius 0; initialize it before rescaling.")
            factors.append((params, target * ref / total / current))
            _check_representable(params, factors[-1][1], target)
        for params, factor in factors:  # only once every layer is known to fit its dtype
            for p in params:
                _scale_(p, factor)
    return module


class SoftmaxTemperature(nn.Module):
    """Wrap a module so that its logits are divided by a softmax temperature ``T``.

    ``softmax(f(x) / T)``: ``T > 1`` flattens the output distribution, ``T < 1`` sharpens
    it. For a bias-free ReLU network of depth ``L``, scaling all weights by ``alpha``
    multiplies the logits by ``alpha**L``, so it equals temperature ``T = alpha**-L``
    (Vysogorets et al. 2024): the Goldilocks zone can be moved by ``T`` alone.
    The temperature is a buffer, not a parameter: it is not trained.

    Examples
    --------
    >>> net = SoftmaxTemperature(torch.nn.Linear(2, 3), temperature=2.0)
    >>> x = torch.ones(1, 2)
    >>> torch.allclose(net(x), net.module(x) / 2)
    True
    """

    def __init__(self, module: nn.Module, temperature: float = 1.0):
        super().__init__()
        temperature = check_real(temperature, "temperature", finite=False)  # (not "2")
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be finite and > 0, got {temperature}.")
        self.module = module
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float64))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs) / self.temperature

    def extra_repr(self) -> str:
        return f"temperature={float(self.temperature):g}"
