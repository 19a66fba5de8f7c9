"""``make_projection``: build any projection from a kind name and a ``random_state``."""

from __future__ import annotations

import math

import torch

from .._names import PROJECTIONS as KINDS
from ._base import Projection, _check_D, _check_d, _check_dtype, _check_metric, as_torch_generator
from ._dense import DenseProjection
from ._fastfood import FastfoodProjection
from ._identity import IdentityProjection
from ._sparse import SparseProjection

#: ``"auto"`` picks ``"dense"`` while ``D*d`` is at most this (80 MB in float64).
AUTO_DENSE_MAX = 10_000_000


def _auto_kind(D: int, d: int) -> str:
    """The rule behind ``kind="auto"`` (see :func:`make_projection`)."""
    if D * d <= AUTO_DENSE_MAX:
        return "dense"
    L = 1 << (D - 1).bit_length()
    expected_nnz = d * (math.ceil(math.sqrt(D)) + 1) / 2
    # COO costs 24 bytes per non-zero in float64, Fastfood about 24 bytes per entry of L.
    return "sparse" if expected_nnz <= L else "fastfood"


def make_projection(
    kind: str,
    D: int,
    d: int,
    random_state=None,
    metric=None,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> Projection:
    """Build a fixed random projection ``P: R^d -> R^D`` with unit-norm columns.

    Parameters
    ----------
    kind : {"dense", "sparse", "sparse-li", "fastfood", "identity", "auto"}
        ``"dense"``: :class:`DenseProjection` (QR-orthonormalised Gaussian, ``O(Dd)`` memory).
        ``"sparse"``: :class:`SparseProjection` with Fort & Scherlis's random column sparsity.
        ``"sparse-li"``: :class:`SparseProjection` with ``density=1/sqrt(D)`` (Li et al.).
        ``"fastfood"``: :class:`FastfoodProjection` (``O(D)`` memory, ``O(D log D)`` per call).
        ``"identity"``: :class:`IdentityProjection`; requires ``d == D`` (``metric`` is only
        validated: renormalised columns of ``diag(metric) I`` are still ``I``).
        ``"auto"``: ``"dense"`` if ``D*d <= 1e7`` (at most 80 MB in float64); otherwise
        ``"sparse"`` if its expected number of non-zeros ``d*(ceil(sqrt(D))+1)/2`` is at most
        ``L`` (the power of two ``>= D``), i.e. while the COO buffers are no larger than
        Fastfood's; otherwise ``"fastfood"``.
    D : int
        Full dimension, ``>= 1``.
    d : int
        Subspace dimension, ``1 <= d <= D``.
    random_state : None, int, numpy.random.Generator, numpy.random.RandomState, torch.Generator
        Converted by :func:`as_torch_generator` to a CPU ``torch.Generator``: an int ``s`` gives
        ``torch.Generator().manual_seed(s)``; numpy generators supply one int seed; ``None`` a
        fresh non-deterministic seed. torch's global RNG is never touched, and the same seed
        gives bit-identical sparse and Fastfood buffers (dense ones up to rounding: the QR's
        sums depend on the number of threads).
    metric : array-like of shape (D,), optional
        Positive row scales (e.g. constant per layer, proportional to that layer's
        initialisation scale): the map becomes ``diag(metric) P`` with columns renormalised.
    dtype : torch.dtype, default torch.float64
    device : torch.device or str, optional
        The random draws are made on the CPU (same seed, same projection on every device),
        then the projection is moved here; Fastfood computes its exact column norms here.

    Returns
    -------
    Projection

    Examples
    --------
    >>> P = make_projection("sparse", 1000, 10, random_state=0)
    >>> (P.D, P.d, P.kind)
    (1000, 10, 'sparse')
    >>> make_projection("auto", 100, 5, random_state=0).kind
    'dense'
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    D = _check_D(D)
    d = _check_d(d, D)
    dtype = _check_dtype(dtype)
    m = _check_metric(metric, D)
    device = _check_device(device)
    if kind == "auto":
        kind = _auto_kind(D, d)
    if kind == "identity":
        if d != D:
            raise ValueError(f"kind='identity' needs d == D = {D}, got d={d}")
        P = IdentityProjection._unchecked(D, dtype)
    else:  # checked above: the classes' constructors would check the same arguments again
        g = as_torch_generator(random_state)
        if kind == "dense":
            P = DenseProjection._unchecked(D, d, g, m, dtype)
        elif kind == "sparse":
            P = SparseProjection._unchecked(D, d, g, m, None, dtype)
        elif kind == "sparse-li":
            P = SparseProjection._unchecked(D, d, g, m, "li", dtype)
        else:
            P = FastfoodProjection._unchecked(D, d, g, m, dtype, device)
    if device is not None:
        P = P.to(device)
    return P


def _check_device(device):
    """``device`` checked like every other engine function's (a ValueError naming it)."""
    if device is None:
        return None
    from .._validation import check_device

    return check_device(device)


def orthogonality_error(P: Projection, max_d: int = 2000) -> dict:
    """Measure how far the columns of ``P`` are from orthonormal.

    ``P^T P`` is formed as ``P.transpose(P.forward(I_d))`` (never through ``to_dense``), in
    float64 when the buffers are float64.

    Parameters
    ----------
    P : Projection
    max_d : int, default 2000
        Refuse (``ValueError`` naming ``d``) when ``P.d`` is larger, since ``P^T P`` is ``d x d``
        and its eigendecomposition costs ``O(d^3)``.

    Returns
    -------
    dict
        ``max_offdiag`` (max ``|P^T P - I|`` off the diagonal), ``max_norm_dev``
        (max ``|diag(P^T P) - 1|``), ``sv_min`` and ``sv_max`` (extreme singular values of ``P``,
        the square roots of the eigenvalues of ``P^T P``). All plain floats.

    Examples
    --------
    >>> err = orthogonality_error(DenseProjection(50, 5, generator=0))
    >>> err["max_offdiag"] < 1e-12 and abs(err["sv_min"] - 1) < 1e-12
    True
    """
    if not isinstance(P, Projection):
        raise TypeError(f"P must be a Projection, got {type(P).__name__}")
    if P.d > max_d:
        raise ValueError(f"orthogonality_error needs d <= max_d={max_d}, got d={P.d}")
    G = P.gram()
    if G.dtype not in (torch.float64, torch.float32):
        G = G.to(torch.float32)
    diag = torch.diagonal(G)
    off = G - torch.diag_embed(diag)
    ev = torch.linalg.eigvalsh(G).clamp_min(0).sqrt()
    return {
        "max_offdiag": float(off.abs().max()) if P.d > 1 else 0.0,
        "max_norm_dev": float((diag - 1).abs().max()),
        "sv_min": float(ev.min()),
        "sv_max": float(ev.max()),
    }
