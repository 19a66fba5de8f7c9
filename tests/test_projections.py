"""Tests for goldisk.projections: exactness against brute force, torch.func, serialisation."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch
from _projection_cases import (
    CASES,
    F64,
    IDS,
    RANDOM_KINDS,
    assert_second_derivatives,
    build,
    columns_from_forward,
    metric_profile,
    rand,
    reference_matrix,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, jvp, vmap

from goldisk.projections import (
    DenseProjection,
    IdentityProjection,
    SparseProjection,
    make_projection,
    orthogonality_error,
)
from goldisk.projections._factory import _auto_kind


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    return request.param


@pytest.fixture
def proj(case):
    return build(case)


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
    m = metric_profile(D)
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
    with_m = make_projection("fastfood", 300, 6, random_state=0, metric=metric_profile(300))
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
