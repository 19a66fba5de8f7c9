"""Dense Gaussian projection with exactly orthonormal columns (QR)."""

from __future__ import annotations

import torch

from ._base import Projection, _check_D, _check_d, _check_dtype, _check_metric, as_torch_generator


def _cholesky_qr2(A: torch.Tensor) -> torch.Tensor | None:
    """``Q`` of ``A = QR`` with ``diag(R) > 0`` by CholeskyQR2; ``None`` if it fails."""
    Q = A
    for _ in range(2):
        R, info = torch.linalg.cholesky_ex(Q.T @ Q, upper=True)
        if int(info) != 0:
            return None
        eye = torch.eye(R.shape[0], dtype=R.dtype)
        Q = Q @ torch.linalg.solve_triangular(R, eye, upper=True)  # d x d inverse, one GEMM
    return Q if float((Q.T @ Q - eye).abs().max()) <= 1e-12 else None


class DenseProjection(Projection):
    """Dense random projection with orthonormal columns.

    A ``D x d`` standard Gaussian matrix is drawn (in float64, on CPU) and orthonormalised
    to the ``Q`` of its QR decomposition with ``diag(R) > 0``, which is unique and
    Haar-distributed on the Stiefel manifold. For a tall matrix (``D >= 4 d``, the usual
    case, where the Gaussian is well conditioned) this is CholeskyQR2 (two rounds of
    ``Q = A R^-1`` with ``R^T R = A^T A``; matrix products only, several times faster
    than Householder QR, see docs/performance.md); otherwise, or if its result is not
    orthonormal to ``1e-12``, Householder QR (``torch.linalg.qr``) with the signs of
    ``diag(R)`` folded into ``Q``. Both give the same ``Q`` up to rounding. The matrix is
    stored as the buffer ``weight`` of shape ``(D, d)``, so memory is ``O(D d)``.

    Parameters
    ----------
    D : int
        Full dimension (rows), ``D >= 1``.
    d : int
        Subspace dimension (columns), ``1 <= d <= D``.
    generator : None, int, numpy or torch generator, optional
        Source of randomness, see :func:`goldisk.projections.make_projection`.
    metric : array-like of shape (D,), optional
        Positive row scales. The map becomes ``diag(metric) Q`` with every column rescaled to
        unit norm (columns are then no longer exactly orthogonal unless ``metric`` is constant).
    dtype : torch.dtype, default torch.float64
        dtype of the stored matrix (randomness is always drawn in float64, so the same seed gives
        the same map up to rounding in any dtype).

    Examples
    --------
    >>> import torch
    >>> P = DenseProjection(6, 2, generator=0)
    >>> P(torch.ones(2, dtype=torch.float64)).shape
    torch.Size([6])
    >>> torch.allclose(P.gram(), torch.eye(2, dtype=torch.float64))
    True
    """

    kind = "dense"

    def __init__(self, D, d, generator=None, metric=None, dtype=torch.float64):
        D = _check_D(D)
        d = _check_d(d, D)
        dtype = _check_dtype(dtype)
        m = _check_metric(metric, D)
        self._build(D, d, generator, m, dtype)

    def _build(self, D, d, generator, m, dtype):
        """``__init__`` for arguments already checked (``make_projection``'s path)."""
        super().__init__(D, d)
        g = as_torch_generator(generator)
        A = torch.randn(D, d, generator=g, dtype=torch.float64)
        Q = _cholesky_qr2(A) if D >= 4 * d else None
        if Q is None:
            Q, R = torch.linalg.qr(A, mode="reduced")
            s = torch.sign(torch.diagonal(R))
            Q = Q * torch.where(s == 0, torch.ones_like(s), s)
        if m is not None:
            Q = m[:, None] * Q
            Q = Q / torch.linalg.vector_norm(Q, dim=0)
        self.register_buffer("weight", Q.to(dtype).contiguous())

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        """Return ``P @ theta``: shape ``(..., d)`` -> ``(..., D)``."""
        self._check_input(theta, self.d, "theta")
        return torch.matmul(theta, self.weight.mT)

    def transpose(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``P^T @ v``: shape ``(..., D)`` -> ``(..., d)``."""
        self._check_input(v, self.D, "v")
        return torch.matmul(v, self.weight)

    def columns(self, start: int, stop: int) -> torch.Tensor:
        """Columns ``start..stop`` of the stored matrix, as rows ``(stop - start, D)``."""
        self._check_columns(start, stop)
        return self.weight[:, start:stop].T.contiguous()

    @property
    def nnz(self) -> int:
        """``D*d``: every entry is stored."""
        return self.D * self.d

    @torch.no_grad()
    def to_dense(self) -> torch.Tensor:
        """Return a copy of the stored ``D x d`` matrix."""
        self._check_dense_size()
        return self.weight.clone()

    @torch.no_grad()
    def column_norms(self) -> torch.Tensor:
        """Euclidean norms of the columns of ``weight``."""
        return torch.linalg.vector_norm(self.weight, dim=0, dtype=torch.float64).to(
            self.weight.dtype)  # accumulated in float64 (long columns)
