"""Full-space Hutchinson estimates of Tr(H), ||H||_F^2 and the same for the G-term."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from .._checks import nonfinite_cause
from .._flat import ParamLayout, parameter_vector
from .._rng import torch_generator
from .._validation import TRANSFORMS_LOCK, check_positive_int, is_int, second_order
from ._losses import logit_hessian
from ._prepare import batches, curvature_inputs
from ._reverse import batched_flat, gradient_graph, hessian_block, reverse_chunk

__all__ = ["hutchinson"]


def _summary(samples: torch.Tensor) -> tuple[float, float]:
    m = samples.numel()
    mean = float(samples.mean())
    se = float(samples.std(unbiased=True)) / math.sqrt(m) if m > 1 else float("nan")
    return mean, se


def hutchinson(
    model: nn.Module,
    X,
    y,
    *,
    n_probes: int = 100,
    gauss_newton: bool = True,
    loss: str = "cross_entropy",
    batch_size: int = 512,
    chunk_size: int | None = None,
    random_state=None,
    dtype=torch.float64,
    device=None,
) -> dict[str, float]:
    """Hutchinson estimates of the full-space curvature, with standard errors.

    With Rademacher probes ``v`` (entries +-1), ``E[v^T H v] = Tr(H)`` and
    ``E[||H v||^2] = Tr(H^2) = ||H||_F^2``. Each probe costs one Hessian-vector product
    over the whole dataset (reverse-over-reverse: one retained gradient graph per
    mini-batch, probes in blocks of ``chunk_size`` (auto: see ``reverse_chunk``) through a
    batched double backward, which also yields ``J v``), and, when ``gauss_newton``, one
    more vector-Jacobian product for ``G v = J^T A J v``. Standard errors are
    ``std / sqrt(n_probes)`` over probes.
    Layers that are random or update buffers in training mode (dropout, BatchNorm, ...)
    give a warning and are measured in eval mode (on a private copy; the caller's module
    is not changed).

    Returns
    -------
    dict with ``trace``, ``trace_se``, ``frobenius2``, ``frobenius2_se``,
    ``trace_ratio`` (``trace / sqrt(frobenius2)``), ``n_probes`` and, with
    ``gauss_newton``, the same keys prefixed ``g_``.

    Examples
    --------
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(20, 3, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 2
    >>> est = hutchinson(net, X, y, n_probes=8, random_state=0)
    >>> abs(est["trace"] - est["g_trace"]) < 1e-10   # a linear model has no H-term
    True
    """
    if gauss_newton not in (True, False):
        raise ValueError(f"gauss_newton must be True or False, got {gauss_newton!r}.")
    if not is_int(n_probes) or n_probes < 1:
        raise ValueError(f"n_probes must be an int >= 1, got {n_probes!r}.")
    chunk_size = check_positive_int(chunk_size, "chunk_size", allow_none=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    net, X, y, integer_input, dtype, device = curvature_inputs(model, X, y, loss, dtype, device)
    layout = ParamLayout(net)
    w0 = parameter_vector(net)
    gen = torch_generator(random_state)
    V = torch.randint(0, 2, (n_probes, layout.D), generator=gen).to(device, dtype) * 2 - 1
    n = len(X)
    HV = torch.zeros_like(V)
    GV = torch.zeros_like(V) if gauss_newton else None
    # batched gradients use vmap, whose state is process-global
    with TRANSFORMS_LOCK, second_order():
        for xb, yb in batches(X, y, batch_size, dtype, device, integer_input):
            if chunk_size is None:  # probes per block: see reverse_chunk
                chunk_size = reverse_chunk(net, layout, w0, xb, n_probes, torch.device(device))
            params, z, r, g, _ = gradient_graph(net, layout, w0, xb, yb, loss, n)
            if gauss_newton:
                A = logit_hessian(z.detach(), yb, loss) / n  # (B, C, C)
            for s in range(0, n_probes, chunk_size):
                hv, dZ = hessian_block(layout, params, r, g, V[s : s + chunk_size],
                                       jv=gauss_newton)
                HV[s : s + chunk_size] += hv
                if gauss_newton:
                    adz = torch.einsum("bce,pbe->pbc", A, dZ)
                    gv = torch.autograd.grad(z, params, grad_outputs=adz, retain_graph=True,
                                             is_grads_batched=True, allow_unused=True,
                                             materialize_grads=True)
                    GV[s : s + chunk_size] += batched_flat(gv, params, len(adz))
            del params, z, r, g
    out: dict[str, float] = {"n_probes": n_probes}
    parts = [("", HV)] + ([("g_", GV)] if gauss_newton else [])
    for prefix, MV in parts:
        tr, tr_se = _summary((V * MV).sum(-1))
        f2, f2_se = _summary(MV.pow(2).sum(-1))
        out.update({
            prefix + "trace": tr,
            prefix + "trace_se": tr_se,
            prefix + "frobenius2": f2,
            prefix + "frobenius2_se": f2_se,
            prefix + "trace_ratio": tr / math.sqrt(f2) if f2 > 0 else float("nan"),
        })
    if not all(math.isfinite(v) for k, v in out.items() if k.endswith(("trace", "frobenius2"))):
        warnings.warn(f"the Hutchinson estimates are not finite: {nonfinite_cause(net)}.",
                      RuntimeWarning, stacklevel=2)
    return out
