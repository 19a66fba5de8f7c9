"""Learning rates from the curvature at initialization: the edge of stability.

On a quadratic with top Hessian eigenvalue ``lambda_max``, gradient descent with step
``lr`` is stable iff ``lr < 2 / lambda_max``; full-batch GD on a network trains at or below
that edge (Cohen et al. 2021, "Gradient descent on neural networks typically occurs at the
edge of stability"; Gilmer et al. 2021 for the role of ``lambda_max`` at init). With
heavy-ball momentum ``beta`` (PyTorch's SGD) the edge is ``(2 + 2 beta) / lr``. For Adam the
relevant curvature is the *preconditioned sharpness*, the top eigenvalue of
``P^{-1/2} H P^{-1/2}`` with Adam's preconditioner ``P = diag(sqrt(v_hat) + eps)``, and the
edge is ``(2 + 2 beta1) / ((1 - beta1) lr)`` (38 / lr for beta1 = 0.9; Cohen et al. 2022,
"Adaptive gradient methods at the edge of stability").
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._validation import check_data, check_float_dtype, check_model, check_positive_int
from ._losses import per_sample_loss

__all__ = ["suggest_lr", "LRSuggestion", "adam_preconditioner", "preconditioned_model"]

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class LRSuggestion:
    """What :func:`suggest_lr` measured.

    Attributes
    ----------
    lr : float
        The largest stable learning rate at init: ``threshold / lambda_max``.
    lambda_max : float
        Top eigenvalue of the Hessian (``"sgd"``) or of the preconditioned Hessian
        ``P^{-1/2} H P^{-1/2}`` (``"adam"``) of the mean loss.
    threshold : float
        ``2 + 2 momentum`` for SGD (2 for plain GD); ``(2 + 2 beta1) / (1 - beta1)`` for Adam.
    optimizer : str
    converged : bool
        Whether the Lanczos iteration for ``lambda_max`` converged.
    """

    lr: float
    lambda_max: float
    threshold: float
    optimizer: str
    converged: bool = True


class _Rescaled(nn.Module):
    """``f(x; u) = model(x; w = s * u)``: its Hessian in ``u`` is ``diag(s) H diag(s)``.

    The wrapped module is held in a tuple so that its parameters are not this module's:
    only ``u`` is (starting at ``w / s``, the same point)."""

    def __init__(self, model: nn.Module, scales: list[torch.Tensor]):
        super().__init__()
        self._inner = (model,)
        self._names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.u = nn.ParameterList(
            [nn.Parameter(params[n].detach() / s) for n, s in zip(self._names, scales,
                                                                  strict=True)])
        for i, s in enumerate(scales):
            self.register_buffer(f"s{i}", s.detach().clone())

    def forward(self, x):
        w = {n: u * getattr(self, f"s{i}") for i, (n, u) in enumerate(zip(self._names, self.u,
                                                                             strict=True))}
        return torch.func.functional_call(self._inner[0], w, (x,))


def adam_preconditioner(model: nn.Module, X, y, *, loss="cross_entropy", eps: float = 1e-8,
                        grad_batch_size: int | None = None, random_state=None,
                        dtype=torch.float64) -> list[torch.Tensor]:
    """Adam's preconditioner at init, ``sqrt(v_hat) + eps`` per parameter tensor.

    ``v_hat`` is the mean of the squared mini-batch gradients over one shuffled epoch of
    batches of ``grad_batch_size`` (``None``: the full-batch gradient, so ``v_hat = g^2``,
    exactly Adam's bias-corrected second moment after its first full-batch step). With
    ``beta2`` near 1, the bias-corrected ``v_hat`` of the first steps is such a mean.
    """
    net = copy.deepcopy(model).to(dtype=dtype).eval()
    X, y = check_data(X, y)
    dev = next(net.parameters()).device
    X = torch.as_tensor(X).to(device=dev, dtype=dtype)
    y = torch.as_tensor(y).to(dev)
    y = y.to(dtype) if y.is_floating_point() else y.long()
    params = [p for p in net.parameters() if p.requires_grad]
    n = len(X)
    bs = n if grad_batch_size is None else min(check_positive_int(grad_batch_size,
                                                                  "grad_batch_size"), n)
    from .._rng import torch_generator

    order = torch.randperm(n, generator=torch_generator(random_state)).to(dev) if bs < n \
        else torch.arange(n, device=dev)
    v = [torch.zeros_like(p) for p in params]
    k = 0
    for start in range(0, n, bs):
        idx = order[start : start + bs]
        g = torch.autograd.grad(per_sample_loss(net(X[idx]), y[idx], loss).mean(), params,
                                allow_unused=True, materialize_grads=True)
        for vi, gi in zip(v, g, strict=True):
            vi += gi.detach() ** 2
        k += 1
    return [(vi / k).sqrt() + eps for vi in v]


def preconditioned_model(model: nn.Module, preconditioner: list[torch.Tensor],
                         dtype=torch.float64) -> nn.Module:
    """A module whose parameters ``u = P^{1/2} w`` give ``model(x; w)``: the Hessian of
    any loss in ``u`` is ``P^{-1/2} H P^{-1/2}``, so every curvature function of goldisk
    measures the preconditioned curvature on it."""
    inner = copy.deepcopy(model).to(dtype=dtype)
    return _Rescaled(inner, [p.to(dtype).rsqrt() for p in preconditioner])


def suggest_lr(model: nn.Module, X, y, optimizer: str = "sgd", *, momentum: float = 0.0,
               betas=(0.9, 0.999), eps: float = 1e-8, grad_batch_size: int | None = None,
               loss: str = "cross_entropy", batch_size: int = 512, tol: float = 1e-5,
               random_state=None, dtype=torch.float64) -> LRSuggestion:
    """The largest learning rate that is stable at init: ``threshold / lambda_max``.

    ``optimizer="sgd"``: full-batch gradient descent (with heavy-ball ``momentum`` as in
    ``torch.optim.SGD``) diverges from the start above ``(2 + 2 momentum) / lambda_max``,
    with ``lambda_max`` the top eigenvalue of the Hessian of the mean loss over ``(X, y)``
    (Cohen et al. 2021). ``optimizer="adam"``: the preconditioned sharpness
    ``lambda_max(P^{-1/2} H P^{-1/2})`` with Adam's preconditioner at init
    (:func:`adam_preconditioner`, from the gradients of the first epoch of batches of
    ``grad_batch_size``) and the threshold ``(2 + 2 beta1) / (1 - beta1)`` of Adam's
    momentum (Cohen et al. 2022). ``tol`` is the Lanczos residual tolerance of
    :func:`goldisk.curvature.top_eigenvalues` (relative to ``lambda_max``; the eigenvalue
    error is of order ``tol**2``, far below what a learning rate needs).
    Measured on digits (docs/reproduction.md): GD at
    0.8 x ``lr`` lowers the loss at every one of its first steps; at 2.5 x it rises.

    ``GoldilocksClassifier`` / ``GoldilocksRegressor`` use this rate only when asked,
    with ``lr="auto"`` (measured at each new init in ``fit``: SGD, or Adam with
    ``grad_batch_size`` = the net's ``batch_size``); their default ``lr=None`` is not
    measured (``1e-3`` in the full space, the rule of
    :func:`goldisk.estimators.subspace_lr` inside a subspace).

    Returns
    -------
    LRSuggestion
        ``lr``, ``lambda_max``, ``threshold``, ``optimizer``, ``converged``.

    Examples
    --------
    >>> from goldisk.models import MLP
    >>> g = torch.Generator().manual_seed(0)
    >>> X, y = torch.randn(40, 4, generator=g), torch.arange(40) % 3
    >>> s = suggest_lr(MLP(4, (8,), 3), X, y, random_state=0)
    >>> s.optimizer, abs(s.lr * s.lambda_max - 2.0) < 1e-12
    ('sgd', True)
    """
    from ._lanczos import top_eigenvalues

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
    check_model(model)
    dtype = check_float_dtype(dtype)
    if optimizer == "sgd":
        if not (isinstance(momentum, int | float) and 0 <= momentum < 1):
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}.")
        threshold, net = 2.0 + 2.0 * momentum, model
    else:
        beta1 = betas[0] if isinstance(betas, tuple | list) and len(betas) == 2 else None
        if not (isinstance(beta1, int | float) and 0 <= beta1 < 1):
            raise ValueError(f"betas must be a pair (beta1, beta2) with 0 <= beta1 < 1, "
                             f"got {betas!r}.")
        if not (isinstance(eps, int | float) and eps > 0):
            raise ValueError(f"eps must be a number > 0, got {eps!r}.")
        threshold = (2.0 + 2.0 * beta1) / (1.0 - beta1)
        P = adam_preconditioner(model, X, y, loss=loss, eps=eps,
                                grad_batch_size=grad_batch_size, random_state=random_state,
                                dtype=dtype)
        net = preconditioned_model(model, P, dtype)
    eigs, info = top_eigenvalues(net, X, y, k=1, loss=loss, batch_size=batch_size, tol=tol,
                                 random_state=random_state, dtype=dtype, return_info=True)
    lam = float(np.asarray(eigs)[0])
    lr = threshold / lam if lam > 0 else math.inf
    return LRSuggestion(lr=lr, lambda_max=lam, threshold=threshold, optimizer=optimizer,
                        converged=bool(info.get("converged", True)))
