"""The state of a classifier at a point: loss, confidence, entropy, logit gradients."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import finite_or_warn, nonfinite_cause
from .._validation import (
    check_data,
    check_float_dtype,
    check_outputs,
    check_positive_int,
    deterministic,
    model_device,
)
from ._losses import logit_gradient, per_sample_loss
from ._prepare import batches, prepare_model

__all__ = ["model_state", "logit_statistics"]


def logit_statistics(z: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy") -> dict:
    """Sums over samples of the per-sample state quantities (see :func:`model_state`)."""
    out = {
        "loss": float(per_sample_loss(z, y, loss).sum()),
        "zero_logit_frac": float((z == 0).sum()) / z.shape[-1],
        "logit_grad_norm": float(logit_gradient(z, y, loss).norm(dim=-1).sum()),
    }
    if loss == "cross_entropy":
        logp = torch.log_softmax(z, dim=-1)
        p = logp.exp()
        out["accuracy"] = float((z.argmax(-1) == y).sum())
        out["confidence"] = float(p.max(-1).values.sum())
        out["entropy"] = float(-(p * logp).nan_to_num().sum())
    return out


@torch.no_grad()
def model_state(
    model: nn.Module, X, y, *, loss="cross_entropy", batch_size=1024, dtype=torch.float64,
    device=None,
) -> dict[str, float]:
    """Loss and output statistics of ``model`` on ``(X, y)``, averaged over samples.

    Returns
    -------
    dict with ``loss`` (mean), ``accuracy``, ``confidence`` (mean max softmax
    probability), ``entropy`` (mean entropy of the softmax, nats), ``logit_grad_norm``
    (mean over samples of ``||d loss_n / d z_n||``, which vanishes when the softmax
    matches the labels or saturates on them) and ``zero_logit_frac`` (fraction of
    (sample, class) logits exactly zero, Vysogorets et al.). ``accuracy``, ``confidence``
    and ``entropy`` are absent for ``loss="mse"``. Layers that are random or update buffers
    in training mode (dropout, BatchNorm, ...; see ``mode_dependent``) give a warning and
    are evaluated in eval mode (on a copy: the caller's module is not changed). When any
    logit is NaN or infinite (NaN parameters, an overflow), every statistic is NaN, with a
    ``RuntimeWarning`` naming the cause: an accuracy or entropy of such logits would look
    finite but mean nothing.

    Examples
    --------
    >>> net = torch.nn.Linear(4, 3)
    >>> _ = torch.nn.init.zeros_(net.weight); _ = torch.nn.init.zeros_(net.bias)
    >>> s = model_state(net, torch.randn(10, 4), torch.arange(10) % 3)
    >>> round(s["loss"], 6), s["zero_logit_frac"], round(s["confidence"], 6)
    (1.098612, 1.0, 0.333333)
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    dtype = check_float_dtype(dtype)
    X, y = check_data(X, y)
    integer_input = check_outputs(model, X, y, loss)
    device = model_device(model, device)

    # dropout/BatchNorm/... in training mode: a warning, then eval mode on a private copy
    net = deterministic(prepare_model(model, dtype, device, curvature=False), model)
    totals: dict[str, float] = {}
    n, finite = 0, True
    for xb, yb in batches(X, y, batch_size, dtype, device, integer_input):
        z = net(xb)
        finite = finite and bool(torch.isfinite(z).all())
        for k, v in logit_statistics(z, yb, loss).items():
            totals[k] = totals.get(k, 0.0) + v
        n += len(xb)
    if n == 0:
        raise ValueError("X is empty; pass at least one sample.")
    out = {k: v / n for k, v in totals.items()}
    if not finite:
        out["loss"] = float("nan")
        out = finite_or_warn(out, nonfinite_cause(net))
    return out
