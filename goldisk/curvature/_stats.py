"""Statistics of a (subspace) Hessian: trace, Frobenius norm, their ratio, eigenvalues."""

from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["hessian_statistics", "batch_statistics", "eigen_statistics", "STATISTICS"]

STATISTICS = (
    "trace",
    "frobenius",
    "trace_ratio",
    "frac_positive",
    "eig_min",
    "eig_max",
)


def batch_statistics(H: torch.Tensor) -> dict[str, np.ndarray]:
    """:func:`hessian_statistics` of a stack of matrices ``H`` (n, d, d), vectorized.

    One batched ``eigvalsh`` on the CPU in float64 serves every matrix; values are numpy
    arrays of length ``n``. Non-finite matrices and ``||H||_F = 0`` give NaN entries
    (without a warning: :func:`hessian_statistics` warns).
    """
    H = H.detach().to(device="cpu", dtype=torch.float64)
    H = 0.5 * (H + H.transpose(-1, -2))
    n, d = H.shape[0], H.shape[-1]
    trace = torch.diagonal(H, dim1=-2, dim2=-1).sum(-1)
    frob = torch.linalg.matrix_norm(H)
    finite = torch.isfinite(H).flatten(1).all(1)
    out = {
        "trace": trace.numpy().copy(),
        "frobenius": frob.numpy().copy(),
        "trace_ratio": np.full(n, np.nan),
        "frac_positive": np.full(n, np.nan),
        "eig_min": np.full(n, np.nan),
        "eig_max": np.full(n, np.nan),
    }
    ok = finite & (frob > 0)
    if bool(ok.any()):
        out["trace_ratio"][ok.numpy()] = (trace[ok] / frob[ok]).numpy()
    if bool(finite.any()):
        eig = torch.linalg.eigvalsh(H[finite])
        tol = d * torch.finfo(torch.float64).eps * eig.abs().amax(-1, keepdim=True)
        idx = finite.numpy()
        out["frac_positive"][idx] = ((eig > tol).sum(-1).double() / d).numpy()
        out["eig_min"][idx] = eig[:, 0].numpy()
        out["eig_max"][idx] = eig[:, -1].numpy()
    return out


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
    H = torch.as_tensor(H)
    if H.dim() != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square (d, d) matrix, got shape {tuple(H.shape)}.")
    stats = {prefix + k: float(v[0])
             for k, v in batch_statistics(H.reshape(1, *H.shape[-2:])).items()}
    warn_statistics(stats, prefix)
    return stats


def warn_statistics(stats: dict, prefix: str = "") -> None:
    """Say why a statistic is NaN: a non-finite Hessian, or ``||H||_F = 0``."""
    trace, frob = stats[prefix + "trace"], stats[prefix + "frobenius"]
    if not (np.isfinite(trace) and np.isfinite(frob)):
        warnings.warn(
            "the Hessian is not finite (overflow at this radius?); its statistics are NaN.",
            RuntimeWarning,
            stacklevel=3,
        )
    elif frob == 0.0:
        name = {"g_": "G", "h_": "H - G"}.get(prefix, "H")  # Gauss-Newton part, H-term
        warnings.warn(
            f"||{name}||_F = 0 (the loss is flat on this subspace, e.g. saturated softmax "
            f"or vanishing gradients): {prefix}trace_ratio is NaN.",
            RuntimeWarning,
            stacklevel=3,
        )


def eigen_statistics(H: torch.Tensor, k: int = 1, prefix: str = "") -> dict[str, float]:
    """``lambda_max``, ``lambda_min`` and, for ``k > 1``, ``lambda_max_2 .. lambda_max_k``
    and ``lambda_min_2 .. lambda_min_k`` of a symmetric matrix (the subspace Hessian):
    the columns :func:`goldisk.top_eigenvalues` gives for the full space, from one
    ``eigvalsh`` in float64 (symmetrized); keys get ``prefix``.

    Examples
    --------
    >>> eigen_statistics(torch.diag(torch.tensor([3.0, -1.0, 1.0])), k=2)
    {'lambda_max': 3.0, 'lambda_min': -1.0, 'lambda_max_2': 1.0, 'lambda_min_2': 1.0}
    """
    H = torch.as_tensor(H).detach().to("cpu", torch.float64)
    if H.dim() != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square (d, d) matrix, got shape {tuple(H.shape)}.")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= H.shape[0]:
        raise ValueError(f"k must be an int in 1..{H.shape[0]}, got {k!r}.")
    ev = torch.linalg.eigvalsh(0.5 * (H + H.T)) if bool(torch.isfinite(H).all()) else \
        torch.full((H.shape[0],), float("nan"), dtype=torch.float64)
    out = {prefix + "lambda_max": float(ev[-1]), prefix + "lambda_min": float(ev[0])}
    for i in range(2, k + 1):
        out[prefix + f"lambda_max_{i}"] = float(ev[-i])
        out[prefix + f"lambda_min_{i}"] = float(ev[i - 1])
    return out
