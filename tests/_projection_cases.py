"""Shared projection cases and brute-force references for the projection tests."""

from __future__ import annotations

import numpy as np
import torch
from torch.func import jacfwd, jacrev, vmap

from goldisk.projections import (
    DenseProjection,
    FastfoodProjection,
    IdentityProjection,
    Projection,
    SparseProjection,
    make_projection,
)

F64 = torch.float64
RANDOM_KINDS = ["dense", "sparse", "sparse-li", "fastfood"]


def metric_profile(D: int) -> torch.Tensor:
    """A positive, layer-wise constant metric (three 'layers' with different scales)."""
    m = torch.ones(D, dtype=F64)
    m[D // 3 :] = 0.05
    m[2 * D // 3 :] = 7.0
    return m


# (kind, D, d, with_metric)
CASES = [
    ("dense", 50, 7, False),
    ("dense", 60, 5, True),
    ("sparse", 300, 11, False),
    ("sparse", 200, 9, True),
    ("sparse-li", 300, 11, False),
    ("sparse-li", 150, 6, True),
    ("fastfood", 300, 11, False),
    ("fastfood", 256, 13, False),  # D == L: no cropping
    ("fastfood", 100, 9, True),
    ("fastfood", 37, 37, False),  # d == D, d not a power of two
    ("identity", 40, 40, False),
]
IDS = [f"{k}-{D}x{d}{'-metric' if m else ''}" for k, D, d, m in CASES]


def build(case, seed=0, dtype=F64) -> Projection:
    kind, D, d, with_metric = case
    metric = metric_profile(D) if with_metric else None
    return make_projection(kind, D, d, random_state=seed, metric=metric, dtype=dtype)


def sylvester(n: int) -> np.ndarray:
    H = np.ones((1, 1))
    while H.shape[0] < n:
        H = np.block([[H, H], [H, -H]])
    return H


def reference_matrix(P: Projection) -> np.ndarray:
    """The D x d matrix rebuilt independently from the buffers (numpy only)."""
    if isinstance(P, IdentityProjection):
        return np.eye(P.D)
    if isinstance(P, DenseProjection):
        return P.weight.double().numpy().copy()
    if isinstance(P, SparseProjection):
        M = np.zeros((P.D, P.d))
        np.add.at(M, (P.rows.numpy(), P.cols.numpy()), P.vals.double().numpy())
        return M
    assert isinstance(P, FastfoodProjection)
    L = P.L
    H = sylvester(L)
    perm = np.zeros((L, L))
    perm[np.arange(L), P.Pi.numpy()] = 1.0  # (Pi y)_i = y[Pi[i]]
    V = H @ np.diag(P.G.double().numpy()) @ perm @ H @ np.diag(P.B.double().numpy())
    M = V[: P.D, : P.d]
    if P.metric is not None:
        M = P.metric.double().numpy()[:, None] * M
    return M / np.linalg.norm(M, axis=0)


def columns_from_forward(P: Projection) -> torch.Tensor:
    """Brute force: the matrix assembled column by column from forward(e_j)."""
    cols = [P(torch.eye(P.d, dtype=P.dtype)[j]) for j in range(P.d)]
    return torch.stack(cols, dim=1)


def rand(*shape, seed=1, dtype=F64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def assert_second_derivatives(P, M, theta, vs):
    """Forward-over-reverse Hessians of ``sum(sin(P theta))`` and, batched by vmap, of
    ``sum(sin(P^T v))`` against their closed forms with the dense matrix ``M``."""
    H = jacfwd(jacrev(lambda t: torch.sin(P(t)).sum()))(theta)
    ref = M.T @ torch.diag(-torch.sin(M @ theta)) @ M
    torch.testing.assert_close(H, ref, rtol=1e-10, atol=1e-12)
    Ht = vmap(jacfwd(jacrev(lambda v: torch.sin(P.transpose(v)).sum())))(vs)
    for i in range(len(vs)):
        ref = M @ torch.diag(-torch.sin(M.T @ vs[i])) @ M.T
        torch.testing.assert_close(Ht[i], ref, rtol=1e-10, atol=1e-12)
