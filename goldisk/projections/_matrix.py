"""A projection from the user's own ``D x d`` matrix, so results can be compared with other
code on exactly the same subspace."""

from __future__ import annotations

import numpy as np
import torch

from ._base import Projection
from ._dense import DenseProjection

__all__ = ["MatrixProjection", "as_projection"]


class MatrixProjection(DenseProjection):
    """``P theta`` for a given ``D x d`` matrix ``P``, used as it is.

    The columns are **not** normalized or orthonormalized (unlike every random
    projection of :func:`make_projection`): the subspace Hessian is ``P^T H P`` with the
    user's ``P``, so that it can be compared with another library's on the same matrix.
    Normalize the columns first (``P / np.linalg.norm(P, axis=0)``) to compare with
    goldisk's projections, whose columns have unit norm. A ``DenseProjection`` in every
    other respect (``kind == "dense"``, buffer ``weight``, ``state_dict``).

    Parameters
    ----------
    matrix : torch.Tensor, numpy array or array-like of shape (D, d)
        Real and finite; ``1 <= d <= D``. Copied (float32 stays float32, anything else
        becomes float64).

    Examples
    --------
    >>> import numpy as np
    >>> P = MatrixProjection(np.eye(4)[:, :2] * 3.0)
    >>> (P.D, P.d), P(torch.ones(2, dtype=torch.float64)).tolist()
    ((4, 2), [3.0, 3.0, 0.0, 0.0])
    """

    kind = "dense"

    def __init__(self, matrix, name: str = "matrix"):
        M = _as_matrix(matrix, name)
        Projection.__init__(self, M.shape[0], M.shape[1])
        self.register_buffer("weight", M)


def _as_matrix(matrix, name: str, D: int | None = None) -> torch.Tensor:
    if torch.is_tensor(matrix):
        M = matrix.detach().to("cpu", copy=True)
    else:
        if isinstance(matrix, str | bytes) or matrix is None:
            raise TypeError(f"{name} must be a D x d tensor or array, got {matrix!r}.")
        try:
            arr = np.array(matrix)  # a copy; negative strides and byte order normalized
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a D x d tensor or array ({exc}).") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                       or arr.dtype == np.bool_):
            raise TypeError(f"{name} must be a numeric D x d matrix, got dtype {arr.dtype}.")
        arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
        M = torch.from_numpy(np.ascontiguousarray(arr))
    if M.is_complex() or M.dtype == torch.bool:
        raise TypeError(f"{name} must be a real D x d matrix, got dtype {M.dtype}; pass "
                        f"{name}.real or a float array.")
    if M.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (D, d) matrix, got shape {tuple(M.shape)}.")
    rows, cols = M.shape
    if D is not None and rows != D:
        hint = (f"; it looks transposed: pass {name}.T" if cols == D else
                "; D is the number of trainable parameters of the model")
        raise ValueError(f"{name} has shape {tuple(M.shape)} but must be (D, d) = ({D}, d)"
                         f"{hint}.")
    if not 1 <= cols <= rows:
        raise ValueError(f"{name} must be (D, d) with 1 <= d <= D, got shape "
                         f"{tuple(M.shape)}.")
    M = M.to(torch.float32 if M.dtype == torch.float32 else torch.float64).contiguous()
    if not bool(torch.isfinite(M).all()):
        raise ValueError(f"{name} contains NaN or infinite entries; pass a finite matrix.")
    return M


def as_projection(projection, D: int | None = None, name: str = "projection") -> Projection:
    """``projection`` as a :class:`Projection`: a Projection is returned as it is; a
    ``D x d`` tensor or array becomes a :class:`MatrixProjection` (columns as given, not
    normalized). ``D``, when given, is the number of rows the matrix must have.

    Raises ``TypeError`` for anything else (a kind name such as ``"dense"``: build it
    with :func:`make_projection`), ``ValueError`` for a matrix of the wrong shape or with
    NaN or infinite entries.

    Examples
    --------
    >>> as_projection(np.ones((6, 2)), D=6).d
    2
    """
    if isinstance(projection, Projection):
        return projection
    if isinstance(projection, torch.nn.Module) or isinstance(projection, str):
        raise TypeError(
            f"{name} must be a goldisk Projection (e.g. make_projection('dense', D, d, "
            f"random_state=0)) or a D x d tensor or array, got {projection!r}.")
    return MatrixProjection(_as_matrix(projection, name, D), name)
