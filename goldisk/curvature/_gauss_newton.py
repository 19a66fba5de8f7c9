"""The Gauss-Newton part alone: ``G = (J P)^T A (J P) / N`` from forward tangents only."""

from __future__ import annotations

import torch

from ._hessian import G_ONLY, CurvatureResult, subspace_hessian

__all__ = ["subspace_gauss_newton"]


def subspace_gauss_newton(model, X, y, projection=None, *, point=None, kind="hyperplane",
                          scales=None, loss="cross_entropy", batch_size=512, method="auto",
                          dtype=torch.float64, device=None) -> CurvatureResult:
    """Gauss-Newton matrix of the mean loss on a random subspace, without the Hessian.

    ``G = sum_n (J_n M)^T A_n (J_n M) / N`` with ``M`` the subspace's Jacobian (``P`` on a
    hyperplane), ``J_n`` the Jacobian of the logits and ``A_n`` the loss's logit Hessian:
    the ``G`` of :func:`subspace_hessian` (same arguments, same value to rounding). With
    the contraction engine (``method="auto"`` on CPU for chains of ``nn.Linear`` layers and
    elementwise activations under a dense or sparse projection, or ``method="contract"``) it takes
    the ``d`` forward tangents only, no backward pass at all; on any other model the
    Hessian engines run and ``H`` is dropped.

    Returns
    -------
    CurvatureResult
        With ``H = None``, ``G`` and the loss.

    Examples
    --------
    The same ``G`` as the full computation's, positive semi-definite:

    >>> from goldisk.datasets import make_circles3
    >>> from goldisk.models import MLP
    >>> from goldisk.projections import make_projection
    >>> ds, net, P = make_circles3(40), MLP(2, (6,), 3), make_projection("dense", 39, 4)
    >>> G = subspace_gauss_newton(net, ds.X, ds.y, P).G
    >>> G_full = subspace_hessian(net, ds.X, ds.y, P).G
    >>> bool(torch.allclose(G, G_full)), bool(torch.linalg.eigvalsh(G).min() > -1e-12)
    (True, True)
    """
    token = G_ONLY.set(True)
    try:
        return subspace_hessian(model, X, y, projection, point=point, kind=kind,
                                scales=scales, loss=loss, gauss_newton=True,
                                batch_size=batch_size, method=method, dtype=dtype,
                                device=device)
    finally:
        G_ONLY.reset(token)
