"""Statistics of a (subspace) Hessian: trace, Frobenius norm, their ratio, eigenvalues."""

from __future__ import annotations

import math
import warnings

import torch

__all__ = ["hessian_statistics", "STATISTICS"]

STATISTICS = (
    "trace",
    "frobenius",
    "trace_ratio",
    "frac_positive",
    "eig_min",
    "eig_max",
)


def hessian_statistics(H: torch.Tensor, prefix: str = "") -> dict[str, float]:
    """Curvature statistics of a symmetric matrix ``H`` (d x d).

    Returns ``trace``, ``frobenius`` (``||H||_F``), ``trace_ratio``
    (``Tr(H)/||H||_F``, in ``[-sqrt(d), sqrt(d)]``), ``frac_positive`` (fraction of
    eigenvalues above round-off, ``lambda > d * eps * max|lambda|``, so that the exact
    zeros of a rank-deficient matrix such as ``G`` are not counted by their noise),
    ``eig_min`` and ``eig_max``; keys get ``prefix``. ``H`` is symmetrized and its
    eigenvalues come from ``eigvalsh`` in float64. When ``||H||_F == 0`` the ratio is NaN,
    with a warning saying why.

    Examples
    --------
    >>> s = hessian_statistics(torch.diag(torch.tensor([3.0, -1.0, 1.0, 1.0])))
    >>> s["trace"], s["frobenius"], s["trace_ratio"], s["frac_positive"]
    (4.0, 3.4641016151377544, 1.1547005383792517, 0.75)
    """
    H = H.detach().to(torch.float64)
    H = 0.5 * (H + H.T)
    d = H.shape[-1]
    trace = float(torch.diagonal(H).sum())
    frob = float(torch.linalg.matrix_norm(H))
    out = {"trace": trace, "frobenius": frob}
    if not (math.isfinite(trace) and math.isfinite(frob)):
        warnings.warn(
            "the Hessian is not finite (overflow at this radius?); its statistics are NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
        nan = float("nan")
        out.update(trace_ratio=nan, frac_positive=nan, eig_min=nan, eig_max=nan)
        return {prefix + k: v for k, v in out.items()}
    if frob == 0.0:
        warnings.warn(
            "||H||_F = 0 (the loss is flat on this subspace, e.g. saturated softmax or "
            "vanishing gradients): trace_ratio is NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
        out["trace_ratio"] = float("nan")
    else:
        out["trace_ratio"] = trace / frob
    eig = torch.linalg.eigvalsh(H)
    tol = d * torch.finfo(torch.float64).eps * float(eig.abs().max())
    out["frac_positive"] = float((eig > tol).sum()) / d
    out["eig_min"] = float(eig[0])
    out["eig_max"] = float(eig[-1])
    return {prefix + k: v for k, v in out.items()}
