"""Tests for goldisk.projections: exactness against brute force, torch.func, serialisation."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, jacfwd, jacrev, jvp, vmap

from goldisk.projections import (
    DenseProjection,
    FastfoodProjection,
    IdentityProjection,
    Projection,
    SparseProjection,
    make_projection,
    orthogonality_error,
)
from goldisk.projections._factory import _auto_kind

F64 = torch.float64
RANDOM_KINDS = ["dense", "sparse", "sparse-li", "fastfood"]


def _metric(D: int) -> torch.Tensor:
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
    metric = _metric(D) if with_metric else None
    return make_projection(kind, D, d, random_state=seed, metric=metric, dtype=dtype)


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    return request.param


@pytest.fixture
def proj(case):
    return build(case)


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


# ---------------------------------------------------------------------------- exactness
def test_forward_matches_reference(proj):
    M = torch.from_numpy(reference_matrix(proj))
    theta = rand(5, proj.d)
    torch.testing.assert_close(proj(theta), theta @ M.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(proj(theta[0]), M @ theta[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(proj.to_dense(), M, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(columns_from_forward(proj), M, rtol=1e-12, atol=1e-12)


def test_columns_are_blocks_of_the_matrix(proj):
    M = torch.from_numpy(reference_matrix(proj))
    for start, stop in [(0, proj.d), (0, 1), (proj.d - 1, proj.d), (proj.d // 2, proj.d)]:
        if start < stop:
            torch.testing.assert_close(proj.columns(start, stop), M[:, start:stop].T,
                                       rtol=1e-12, atol=1e-12)
    for bad in [(-1, 1), (0, proj.d + 1), (1, 1)]:
        with pytest.raises(ValueError, match="columns needs 0 <= start < stop"):
            proj.columns(*bad)


def test_transpose_is_exact_adjoint(proj):
    M = torch.from_numpy(reference_matrix(proj))
    x, v = rand(proj.d, seed=2), rand(3, proj.D, seed=3)
    torch.testing.assert_close(proj.transpose(v), v @ M, rtol=1e-12, atol=1e-12)
    lhs = torch.dot(proj(x), v[0])
    rhs = torch.dot(x, proj.transpose(v[0]))
    assert abs(float(lhs - rhs)) <= 1e-12 * (1 + abs(float(lhs)))


def test_unit_column_norms(proj):
    ones = torch.ones(proj.d, dtype=F64)
    torch.testing.assert_close(proj.column_norms(), ones, rtol=1e-10, atol=0)
    torch.testing.assert_close(columns_from_forward(proj).norm(dim=0), ones, rtol=1e-10, atol=0)
    torch.testing.assert_close(torch.diagonal(proj.gram()), ones, rtol=1e-10, atol=0)


def test_gram_and_orthogonality_error(proj):
    M = proj.to_dense()
    torch.testing.assert_close(proj.gram(), M.T @ M, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(proj.gram(chunk_size=2), M.T @ M, rtol=1e-12, atol=1e-12)
    err = orthogonality_error(proj)
    assert set(err) == {"max_offdiag", "max_norm_dev", "sv_min", "sv_max"}
    assert err["max_norm_dev"] < 1e-10
    sv = torch.linalg.svdvals(M)
    assert math.isclose(err["sv_max"], float(sv.max()), rel_tol=1e-8)
    assert math.isclose(err["sv_min"], float(sv.min()), rel_tol=1e-6, abs_tol=1e-8)


@pytest.mark.parametrize("D,d", [(1, 1), (9, 9), (50, 7), (200, 1)])
def test_dense_is_orthonormal(D, d):
    P = DenseProjection(D, d, generator=5)
    torch.testing.assert_close(P.gram(), torch.eye(d, dtype=F64), rtol=0, atol=1e-12)
    err = orthogonality_error(P)
    assert err["max_offdiag"] < 1e-12 and abs(err["sv_min"] - 1) < 1e-12


@pytest.mark.parametrize("kind", ["sparse", "sparse-li", "fastfood"])
def test_near_orthogonality_large_D(kind):
    P = make_projection(kind, 4096, 20, random_state=0)
    err = orthogonality_error(P)
    assert err["max_offdiag"] < 0.2, err
    assert err["max_norm_dev"] < 1e-10
    assert 0.5 < err["sv_min"] <= err["sv_max"] < 1.5
    M = P.to_dense()
    assert bool((M.abs().sum(dim=0) > 0).all())


def test_identity_is_identity():
    P = IdentityProjection(6)
    x = rand(6)
    y = P(x)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    y.add_(1)  # the output is a copy
    assert not torch.equal(y, x)
    torch.testing.assert_close(P.to_dense(), torch.eye(6, dtype=F64))
    assert orthogonality_error(P)["max_offdiag"] == 0.0


# ---------------------------------------------------------------------------- sparse structure
@pytest.mark.parametrize("D", [1, 2, 10, 1000])
def test_sparse_fort_structure(D):
    P = SparseProjection(D, min(D, 30), generator=3)
    rows, cols, vals = P.rows.numpy(), P.cols.numpy(), P.vals.numpy()
    counts = np.bincount(cols, minlength=P.d)
    assert counts.min() >= 1 and counts.max() <= max(1, math.ceil(math.sqrt(D)))
    np.testing.assert_allclose(np.abs(vals), 1 / np.sqrt(counts[cols]), rtol=1e-15)
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == len(rows)  # distinct
    assert P.nnz == len(vals) and P.nnz == counts.sum()
    assert set(np.sign(vals).tolist()) <= {-1.0, 1.0}


def test_sparse_fort_counts_cover_one_to_ceil_sqrt_D():
    # n_j is uniform on {1, ..., ceil(sqrt(D))} = {1..32}: in 1,000 columns each value is
    # missing with probability (31/32)^1000 < 1e-13
    P = SparseProjection(1000, 1000, generator=4)
    counts = np.bincount(P.cols.numpy(), minlength=P.d)
    assert set(counts.tolist()) == set(range(1, math.ceil(math.sqrt(1000)) + 1))


def test_sparse_signs_and_positions_are_balanced():
    P = SparseProjection(1000, 200, generator=4)
    frac_pos = float((P.vals > 0).double().mean())
    assert 0.45 < frac_pos < 0.55
    hist = np.bincount(P.rows.numpy(), minlength=1000)
    assert hist.max() < 10 * max(1, hist.mean())


def test_sparse_density():
    D, d = 2500, 40
    P = SparseProjection(D, d, generator=0, density="li")
    assert P.density == pytest.approx(1 / 50)
    assert abs(P.nnz / d - 50) < 10  # Binomial(2500, 1/50): mean 50, sd 7/sqrt(40) per column
    P = SparseProjection(50, 5, generator=0, density=1.0)
    assert P.nnz == 250  # every entry non-zero
    P = SparseProjection(10_000, 50, generator=0, density=1e-9)
    assert P.nnz == 50  # forced >= 1 per column
    torch.testing.assert_close(P.column_norms(), torch.ones(50, dtype=F64))


# ---------------------------------------------------------------------------- metric
@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_metric_is_row_scaling_then_renormalisation(kind):
    D, d = 90, 6
    m = _metric(D)
    P0 = make_projection(kind, D, d, random_state=8)
    Pm = make_projection(kind, D, d, random_state=8, metric=m)
    ref = m[:, None] * P0.to_dense()
    ref = ref / ref.norm(dim=0)
    torch.testing.assert_close(Pm.to_dense(), ref, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- randomness
def _buffers_equal(P, Q):
    a, b = dict(P.named_buffers()), dict(Q.named_buffers())
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_seed_determinism(kind):
    mk = lambda rs: make_projection(kind, 200, 8, random_state=rs)  # noqa: E731
    assert _buffers_equal(mk(3), mk(3))
    assert not _buffers_equal(mk(3), mk(4))
    assert _buffers_equal(mk(np.random.default_rng(1)), mk(np.random.default_rng(1)))
    assert _buffers_equal(mk(np.random.RandomState(1)), mk(np.random.RandomState(1)))
    assert _buffers_equal(
        mk(torch.Generator().manual_seed(2)), mk(torch.Generator().manual_seed(2))
    )
    assert _buffers_equal(mk(3), mk(torch.Generator().manual_seed(3)))
    assert not _buffers_equal(mk(None), mk(None))


def test_global_rng_untouched():
    state = torch.random.get_rng_state()
    for kind in RANDOM_KINDS:
        make_projection(kind, 64, 4, random_state=0)
    assert torch.equal(state, torch.random.get_rng_state())


# ---------------------------------------------------------------------------- torch.func
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


def test_func_transforms(proj):
    M = proj.to_dense()
    thetas = rand(4, proj.d, seed=6)
    vs = rand(4, proj.D, seed=7)
    torch.testing.assert_close(vmap(proj)(thetas), thetas @ M.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vmap(proj.transpose)(vs), vs @ M, rtol=1e-12, atol=1e-12)
    out, tangent = jvp(proj, (thetas[0],), (thetas[1],))
    torch.testing.assert_close(tangent, M @ thetas[1], rtol=1e-12, atol=1e-12)
    out, tangent = jvp(proj.transpose, (vs[0],), (vs[1],))
    torch.testing.assert_close(tangent, M.T @ vs[1], rtol=1e-12, atol=1e-12)
    g = grad(lambda t: (proj(t) ** 2).sum())(thetas[0])
    torch.testing.assert_close(g, 2 * M.T @ (M @ thetas[0]), rtol=1e-10, atol=1e-12)

    assert_second_derivatives(proj, M, thetas[0], vs[:2])


def test_autograd_backward(proj):
    theta = rand(proj.d).requires_grad_()
    (proj(theta) ** 2).sum().backward()
    M = proj.to_dense()
    torch.testing.assert_close(theta.grad, 2 * M.T @ (M @ theta.detach()), rtol=1e-10, atol=1e-12)
    assert list(proj.parameters()) == []


# ---------------------------------------------------------------------------- serialisation
def test_state_dict_round_trip(case, proj):
    fresh = build(case, seed=123)
    fresh.load_state_dict(proj.state_dict())
    theta = rand(3, proj.d)
    torch.testing.assert_close(fresh(theta), proj(theta), rtol=0, atol=0)


def test_state_dict_across_configurations():
    theta = rand(6)
    li = make_projection("sparse-li", 300, 6, random_state=0)
    fort = make_projection("sparse", 300, 6, random_state=1)
    fort.load_state_dict(li.state_dict())
    assert fort.density == li.density and fort.nnz == li.nnz
    torch.testing.assert_close(fort(theta), li(theta), rtol=0, atol=0)
    with_m = make_projection("fastfood", 300, 6, random_state=0, metric=_metric(300))
    without = make_projection("fastfood", 300, 6, random_state=1)
    without.load_state_dict(with_m.state_dict())
    torch.testing.assert_close(without(theta), with_m(theta), rtol=0, atol=0)
    with_m.load_state_dict(make_projection("fastfood", 300, 6, random_state=2).state_dict())
    assert with_m.metric is None
    with pytest.raises(ValueError, match="state_dict"):
        make_projection("sparse", 301, 6).load_state_dict(li.state_dict())
    with pytest.raises(ValueError, match="state_dict"):
        make_projection("dense", 300, 6).load_state_dict(li.state_dict())


def test_deepcopy_and_pickle(proj):
    theta = rand(proj.d)
    for clone in (copy.deepcopy(proj), pickle.loads(pickle.dumps(proj))):
        assert (clone.D, clone.d, clone.kind) == (proj.D, proj.d, proj.kind)
        torch.testing.assert_close(clone(theta), proj(theta), rtol=0, atol=0)


def test_dtype_conversion(case, proj):
    P32 = copy.deepcopy(proj).to(torch.float32)
    assert P32.dtype == torch.float32
    theta = rand(2, proj.d)
    y32 = P32(theta.float())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), proj(theta), rtol=1e-5, atol=1e-5)
    assert P32.transpose(rand(proj.D).float()).dtype == torch.float32
    back = copy.deepcopy(P32).double()
    assert back.dtype == F64
    torch.testing.assert_close(back(theta), proj(theta), rtol=1e-6, atol=1e-6)
    built32 = build(case, dtype=torch.float32)  # same draws, stored in float32
    torch.testing.assert_close(built32(theta.float()).double(), proj(theta), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="dtype"):
        P32(theta)


def test_device_argument_and_repr():
    P = make_projection("fastfood", 30, 3, random_state=0, device="cpu")
    assert P.device.type == "cpu"
    r = repr(P)
    assert "D=30" in r and "d=3" in r and "fastfood" in r


def test_nnz_and_memory():
    D, d = 4096, 20
    dense = make_projection("dense", D, d, random_state=0)
    assert dense.nnz == D * d and dense.memory_bytes == D * d * 8
    assert make_projection("identity", 7, 7).nnz == 7
    for kind in ["sparse", "sparse-li", "fastfood"]:
        P = make_projection(kind, D, d, random_state=0)
        sizes = [b.numel() for b in P.buffers()]
        assert max(sizes) < D * d / 4, (kind, sizes)  # nothing remotely like a D x d buffer
        assert P.memory_bytes == sum(b.numel() * b.element_size() for b in P.buffers())
        assert P.memory_bytes < D * d * 8 / 4
        if kind == "fastfood":
            assert P.nnz is None
        else:
            assert P.nnz == P.vals.numel() < D * d / 10


# ---------------------------------------------------------------------------- factory / errors
def test_auto_kind():
    assert make_projection("auto", 100, 5, random_state=0).kind == "dense"
    assert _auto_kind(199_210, 1000) == "sparse"
    assert _auto_kind(10**6, 10**4) == "fastfood"
    assert _auto_kind(10**4, 1000) == "dense"


def test_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        make_projection("gaussian", 10, 2)
    with pytest.raises(ValueError, match=r"\bD\b"):
        make_projection("dense", 0, 1)
    with pytest.raises(ValueError, match=r"\bD\b"):
        make_projection("dense", 2.5, 1)
    for bad_d in (0, 11, -1, 2.0, True):
        with pytest.raises(ValueError, match=r"\bd\b.*\[1, D=10\]"):
            make_projection("sparse", 10, bad_d)
    with pytest.raises(ValueError, match=r"\bd\b"):
        DenseProjection(3, 4)
    with pytest.raises(ValueError, match=r"\bd\b"):
        make_projection("identity", 10, 3)
    for bad_metric in (torch.ones(9), -torch.ones(10), torch.full((10,), float("nan")), [0.0] * 10):
        with pytest.raises(ValueError, match="metric"):
            make_projection("fastfood", 10, 3, metric=bad_metric)
    for bad_density in (0.0, 1.5, "fort", float("nan"), True):
        with pytest.raises(ValueError, match="density"):
            SparseProjection(10, 3, density=bad_density)
    with pytest.raises(ValueError, match="dtype"):
        make_projection("dense", 10, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="random_state"):
        make_projection("dense", 10, 3, random_state=-1)
    P = make_projection("sparse", 10, 3, random_state=0)
    with pytest.raises(ValueError, match="theta"):
        P(torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match="v"):
        P.transpose(torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match=r"D\*d"):
        IdentityProjection(8000).to_dense()
    with pytest.raises(ValueError, match=r"\bd\b"):
        orthogonality_error(make_projection("sparse", 100, 50, random_state=0), max_d=10)


# ---------------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(RANDOM_KINDS + ["identity"]),
    D=st.integers(1, 300),
    frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
)
def test_property_unit_norms_and_adjoint(kind, D, frac, seed):
    d = D if kind == "identity" else 1 + int(frac * (D - 1))
    P = make_projection(kind, D, d, random_state=seed)
    torch.testing.assert_close(P.column_norms(), torch.ones(d, dtype=F64), rtol=1e-10, atol=0)
    x, v = rand(d, seed=seed % 1000), rand(D, seed=seed % 1000 + 1)
    lhs, rhs = torch.dot(P(x), v), torch.dot(x, P.transpose(v))
    assert abs(float(lhs - rhs)) <= 1e-10 * (1 + float(x.norm() * v.norm()))


# ---------------------------------------------------------------------------- fast paths
# Sparse and Fastfood projections take a fast path on plain 1-D / 2-D tensors (an autograd
# Function: CSR products, a CSR fold) and fall back to functional ops under torch.func.
FAST_CASES = [c for c in CASES if c[0] in ("sparse", "sparse-li", "fastfood")]
FAST_IDS = [i for c, i in zip(CASES, IDS, strict=True) if c in FAST_CASES]


@pytest.fixture(params=FAST_CASES, ids=FAST_IDS)
def fast_proj(request):
    return build(request.param)


@pytest.fixture
def fast_calls(monkeypatch):
    """Record every call of the fast path (``_fast_product``) of both projection classes."""
    calls = []
    for cls in (SparseProjection, FastfoodProjection):
        original = cls._fast_product

        def counting(self, x, transposed, _original=original):
            calls.append((type(self).__name__, tuple(x.shape), transposed))
            return _original(self, x, transposed)

        monkeypatch.setattr(cls, "_fast_product", counting)
    return calls


def functional(P, x, transposed=False):
    """The torch.func-safe formulation (what transforms see), called directly."""
    if isinstance(P, SparseProjection):
        return P._gather_scatter(x, transposed)
    return P._transpose(x, fast=False) if transposed else P._forward(x)


def test_fast_path_matches_functional_form(fast_proj, fast_calls):
    P = fast_proj
    M = torch.from_numpy(reference_matrix(P))
    for theta in (rand(P.d, seed=2), rand(5, P.d, seed=3)):
        y = P(theta)
        assert y.shape == theta.shape[:-1] + (P.D,) and y.is_contiguous()
        torch.testing.assert_close(y, functional(P, theta), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(y, theta @ M.T, rtol=1e-12, atol=1e-12)
    for v in (rand(P.D, seed=4), rand(3, P.D, seed=5)):
        z = P.transpose(v)
        assert z.shape == v.shape[:-1] + (P.d,) and z.is_contiguous()
        torch.testing.assert_close(z, functional(P, v, True), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(z, v @ M, rtol=1e-12, atol=1e-12)
    assert [c[1:] for c in fast_calls] == [((P.d,), False), ((5, P.d), False),
                                          ((P.D,), True), ((3, P.D), True)]
    # more than two dimensions, or an empty batch: the functional form
    theta3 = rand(2, 3, P.d, seed=6)
    torch.testing.assert_close(P(theta3), theta3 @ M.T, rtol=1e-12, atol=1e-12)
    assert P(torch.zeros(0, P.d, dtype=F64)).shape == (0, P.D)
    assert len(fast_calls) == 4


def test_fast_path_keeps_inf_and_nan_in_place(fast_proj):
    P = fast_proj
    theta = rand(P.d, seed=1)
    theta[0] = float("inf")
    y, ref = P(theta), functional(P, theta)
    torch.testing.assert_close(y.isnan(), ref.isnan(), rtol=0, atol=0)
    torch.testing.assert_close(y.isinf(), ref.isinf(), rtol=0, atol=0)


def test_sparse_blocked_product_ignores_uninitialised_memory():
    """The blocked CPU product writes into ``empty`` memory with beta=0: nothing may leak."""
    P = make_projection("sparse-li", 300, 11, random_state=0)
    C = P._csr(False)
    assert C.blocked is not None and C.k == 4  # float64: 4 per 32 bytes
    theta = rand(11)
    for _ in range(5):
        junk = torch.full((C.blocked.shape[0] * C.k,), float("nan"), dtype=F64)
        del junk  # its memory is likely handed out again
        y = C(theta)
        assert bool(torch.isfinite(y).all())
        torch.testing.assert_close(y, P._gather_scatter(theta, False), rtol=1e-12, atol=1e-12)
    assert P.float()._csr(False).k == 8


def test_fast_path_gradients_and_double_backward(fast_proj, fast_calls):
    P = fast_proj
    M = P.to_dense()
    fast_calls.clear()
    theta = rand(P.d, seed=7).requires_grad_()
    y = P(theta)
    assert type(y.grad_fn).__name__ == "_FixedLinearBackward"
    w = rand(P.D, seed=8)
    (g,) = torch.autograd.grad(torch.sin(y) @ w, theta, create_graph=True)
    torch.testing.assert_close(g, M.T @ (torch.cos(M @ theta) * w), rtol=1e-10, atol=1e-12)
    # double backward: the Hessian of sin(P theta) . w, row by row
    H = torch.stack([torch.autograd.grad(g[i], theta, retain_graph=True)[0] for i in range(P.d)])
    ref = M.T @ torch.diag(-torch.sin(M @ theta.detach()) * w) @ M
    torch.testing.assert_close(H, ref, rtol=1e-10, atol=1e-12)
    # the same through the transpose, with a batch of inputs
    V = rand(3, P.D, seed=9).requires_grad_()
    (gV,) = torch.autograd.grad((P.transpose(V) ** 2).sum(), V)
    torch.testing.assert_close(gV, 2 * (V.detach() @ M) @ M.T, rtol=1e-10, atol=1e-12)
    # the backward of P runs P^T on the fast path and vice versa
    assert {c[2] for c in fast_calls} == {False, True} and len(fast_calls) > 4


@pytest.mark.parametrize("kind", ["sparse", "sparse-li", "fastfood"])
def test_fast_path_gradcheck(kind, fast_calls):
    P = make_projection(kind, 40, 6, random_state=1)
    theta = rand(6, seed=1).requires_grad_()
    V = rand(2, 40, seed=2).requires_grad_()
    for fn, x in ((P, theta), (P.transpose, V), (lambda t: torch.sin(P(t)), theta),
                  (lambda v: torch.exp(P.transpose(v)), V)):
        # check_batched_grad runs the backward under vmap: the functional fallback
        assert torch.autograd.gradcheck(fn, (x,), check_forward_ad=True, check_batched_grad=True)
        assert torch.autograd.gradgradcheck(fn, (x,), check_batched_grad=True)
    assert fast_calls


def test_fast_path_batched_grads_fall_back(fast_proj):
    P = fast_proj
    M = P.to_dense()
    theta = rand(P.d, seed=3).requires_grad_()
    W = rand(4, P.D, seed=4)
    (J,) = torch.autograd.grad(P(theta), theta, grad_outputs=W, is_grads_batched=True)
    torch.testing.assert_close(J, W @ M, rtol=1e-12, atol=1e-12)


def test_fast_path_forward_ad_on_dual_tensors(fast_proj, fast_calls):
    import torch.autograd.forward_ad as fwAD

    P = fast_proj
    M = P.to_dense()
    fast_calls.clear()
    theta, tangent = rand(P.d, seed=5), rand(P.d, seed=6)
    with fwAD.dual_level():
        primal, tan = fwAD.unpack_dual(P(fwAD.make_dual(theta, tangent)))
    torch.testing.assert_close(primal, M @ theta, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tan, M @ tangent, rtol=1e-12, atol=1e-12)
    assert len(fast_calls) == 2


def test_func_transforms_use_the_functional_form(fast_proj, fast_calls):
    P = fast_proj
    M = P.to_dense()
    fast_calls.clear()
    thetas, vs = rand(3, P.d, seed=7), rand(3, P.D, seed=8)
    torch.testing.assert_close(vmap(P)(thetas), thetas @ M.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vmap(P.transpose)(vs), vs @ M, rtol=1e-12, atol=1e-12)
    _, tangent = jvp(P, (thetas[0],), (thetas[1],))
    torch.testing.assert_close(tangent, M @ thetas[1], rtol=1e-12, atol=1e-12)
    g = grad(lambda t: (P(t) ** 2).sum())(thetas[0])
    torch.testing.assert_close(g, 2 * M.T @ (M @ thetas[0]), rtol=1e-10, atol=1e-12)
    assert_second_derivatives(P, M, thetas[0], vs[:2])
    # a plain tensor captured inside a transform also takes the functional form
    torch.testing.assert_close(vmap(lambda s: P(thetas[0]) * s)(torch.ones(2, dtype=F64)),
                               (M @ thetas[0]).expand(2, -1), rtol=1e-12, atol=1e-12)
    assert fast_calls == []


@pytest.mark.parametrize("kind", ["sparse", "fastfood"])
def test_fast_path_cache_follows_the_buffers(kind):
    cache = "_csr_cache" if kind == "sparse" else "_ff_cache"
    P = make_projection(kind, 300, 11, random_state=0)
    theta, v = rand(11), rand(300, seed=2)
    y, z = P(theta), P.transpose(v)
    assert cache in P.__dict__
    before = P.state_dict()
    assert set(before) == set(build((kind, 300, 11, False), seed=4).state_dict())
    assert P.memory_bytes == sum(b.numel() * b.element_size() for b in P.buffers())
    # a load into the same buffers (in-place copy): the cache is rebuilt
    Q = make_projection(kind, 300, 11, random_state=3 if kind == "fastfood" else 0)
    Q(theta), Q.transpose(v)
    sd = {k: (-t if k in ("vals", "G") else t) for k, t in before.items()}
    Q.load_state_dict(sd)
    torch.testing.assert_close(Q(theta), -y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(Q.transpose(v), -z, rtol=1e-12, atol=1e-12)
    for name in ("vals", "G"):
        if hasattr(Q, name):
            getattr(Q, name).neg_()  # in-place change of a buffer
    torch.testing.assert_close(Q(theta), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(Q.transpose(v), z, rtol=1e-12, atol=1e-12)
    # dtype changes, deepcopy and pickle: the cache is not carried over
    P32 = copy.deepcopy(P).float()
    assert cache not in P32.__dict__
    y32 = P32(theta.float())
    assert y32.dtype == torch.float32 and P32.transpose(v.float()).dtype == torch.float32
    torch.testing.assert_close(y32.double(), y, rtol=1e-5, atol=1e-5)
    clone = pickle.loads(pickle.dumps(P32))
    assert cache not in clone.__dict__
    torch.testing.assert_close(clone(theta.float()), y32, rtol=0, atol=0)
    torch.testing.assert_close(P.double()(theta), y, rtol=0, atol=0)
    # built and used in inference mode, then used with autograd
    with torch.inference_mode():
        R = make_projection(kind, 300, 11, random_state=0)
        torch.testing.assert_close(R(theta), y, rtol=1e-12, atol=1e-12)
    t = theta.clone().requires_grad_()
    R(t).sum().backward()
    torch.testing.assert_close(t.grad, P.to_dense().sum(0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["sparse", "sparse-li", "fastfood"])
def test_subspace_training_step_matches_functional_form(kind, monkeypatch):
    from goldisk import SubspaceModule
    from goldisk.projections import _fastfood, _sparse

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    D = sum(p.numel() for p in net.parameters())
    X, y = rand(10, 6, seed=1).float(), torch.arange(10) % 3

    def step():
        P = make_projection(kind, D, 5, random_state=0, dtype=torch.float32)
        sub = SubspaceModule(net, P)
        sub.theta.data.normal_(generator=torch.Generator().manual_seed(2))
        loss = torch.nn.functional.cross_entropy(sub(X), y)
        loss.backward()
        return loss.detach(), sub.theta.grad

    fast = step()
    for module in (_sparse, _fastfood):
        monkeypatch.setattr(module, "_fast_path_ok", lambda x: False)
    slow = step()
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["sparse", "sparse-li", "fastfood"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_fast_path_cuda(kind, dtype, fast_calls):
    P = make_projection(kind, 500, 12, random_state=0, dtype=dtype)
    Pc = copy.deepcopy(P).to("cuda")
    theta = rand(3, 12, seed=1, dtype=dtype).requires_grad_()
    tc = theta.detach().cuda().requires_grad_()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(Pc(tc).cpu(), P(theta), rtol=tol, atol=tol)
    torch.testing.assert_close(Pc(tc[0]).cpu(), P(theta[0]), rtol=tol, atol=tol)
    (Pc(tc) ** 2).sum().backward()
    (P(theta) ** 2).sum().backward()
    torch.testing.assert_close(tc.grad.cpu(), theta.grad, rtol=tol, atol=tol)
    v = rand(500, seed=2, dtype=dtype)
    torch.testing.assert_close(Pc.transpose(v.cuda()).cpu(), P.transpose(v), rtol=tol, atol=tol)
    assert any(c[0] == type(P).__name__ for c in fast_calls)
    torch.testing.assert_close(vmap(Pc)(tc.detach()).cpu(), P(theta.detach()), rtol=tol, atol=tol)
    torch.use_deterministic_algorithms(True)
    try:
        n = len(fast_calls)
        torch.testing.assert_close(Pc(tc.detach()).cpu(), P(theta.detach()), rtol=tol, atol=tol)
        assert len(fast_calls) == n + 1  # the CPU call only: CUDA takes the functional form
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("D,d", [(400, 100), (5000, 7)])
def test_dense_cholesky_qr2_equals_householder_q(D, d):
    from goldisk.projections._dense import _cholesky_qr2

    A = torch.randn(D, d, generator=torch.Generator().manual_seed(3), dtype=F64)
    Q, R = torch.linalg.qr(A)
    Q = Q * torch.sign(torch.diagonal(R))  # the unique Q with diag(R) > 0
    torch.testing.assert_close(_cholesky_qr2(A), Q, rtol=0, atol=1e-12)
    assert _cholesky_qr2(torch.ones(D, d, dtype=F64)) is None or d == 1  # rank 1: fallback
    P = make_projection("dense", D, d, random_state=3)
    torch.testing.assert_close(P.gram(), torch.eye(d, dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="needs CUDA"))],
)
def test_fastfood_norms_on_device_same_draws(device):
    """``device=`` computes the exact column norms there; the random draws stay the CPU's."""
    ref = make_projection("fastfood", 3000, 40, random_state=3)
    P = make_projection("fastfood", 3000, 40, random_state=3, device=device)
    assert P.G.device.type == device and P.inv_norms.device.type == device
    for name in ("B", "Pi", "G"):
        assert torch.equal(getattr(P, name).cpu(), getattr(ref, name))
    torch.testing.assert_close(P.inv_norms.cpu(), ref.inv_norms, rtol=1e-14, atol=0)
    cols = torch.linalg.vector_norm(P.to_dense(), dim=0)
    torch.testing.assert_close(cols.cpu(), torch.ones(40, dtype=torch.float64), rtol=1e-13, atol=0)


def test_sparse_columns_build_no_csr_form():
    # columns() feeds every block of the reverse engine; a CSR form of P (a D + 1 row-pointer
    # array, 44 MB for a ResNet-18) would be built and kept for it by the default forward(E)
    P = SparseProjection(500, 7, generator=0)
    torch.testing.assert_close(P.columns(2, 6), P.to_dense()[:, 2:6].T, rtol=0, atol=0)
    assert "_csr_cache" not in P.__dict__
