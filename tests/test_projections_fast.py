"""Tests for the projections' fast paths (CSR products, the Fastfood fold), dense
CholeskyQR2 and device placement, each against the functional form or brute force."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from _projection_cases import (
    CASES,
    F64,
    IDS,
    assert_second_derivatives,
    build,
    rand,
    reference_matrix,
)
from torch.func import grad, jvp, vmap

from goldisk.projections import (
    FastfoodProjection,
    SparseProjection,
    make_projection,
)

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
    cache = "_csr_cache" if kind == "sparse" else "_ff_fold"
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
    from goldisk.projections import _common  # _FixedMap: both kinds' two code paths

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
    monkeypatch.setattr(_common, "_fast_path_ok", lambda x: False)
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


def test_float32_column_norms_are_accumulated_in_float64():
    # the columns of a float32 projection are unit to ~1e-8; a float32 sum over 4M entries
    # reported them off by ~1e-4
    from goldisk.projections import make_projection

    for kind in ("dense", "sparse", "fastfood"):
        P = make_projection(kind, 2**22 + 1, 2, random_state=0, dtype=torch.float32)
        exact = torch.linalg.vector_norm(P.to_dense().double(), dim=0)
        assert (P.column_norms().double() - exact).abs().max() < 1e-6, kind


def test_a_no_op_move_keeps_the_fastfood_cache():
    from goldisk.projections import make_projection

    P = make_projection("fastfood", 1000, 3, random_state=0, dtype=torch.float32)
    P.transpose(P(torch.ones(3)))
    caches = {name: P.__dict__[name] for name in ("_ff_index", "_ff_fold")}
    P.to(torch.float32)
    assert all(P.__dict__.get(name) is cache for name, cache in caches.items())
    P.double()  # a real cast frees them
    assert all(P.__dict__.get(name) is None for name in caches)


def test_fastfood_builds_its_fold_only_for_transpose_and_keeps_it_across_inv_norms():
    # construction runs only `forward` (column norms): the adjoint's CSR fold (the largest
    # cache) waits for the first `transpose`, and a change of `inv_norms` or `B` (which it
    # does not depend on) keeps it, while the products follow the change
    from goldisk.projections import make_projection

    P = make_projection("fastfood", 700, 9, random_state=0)
    assert "_ff_fold" not in P.__dict__
    theta, v = rand(9), rand(700, seed=2)
    M = P.to_dense()
    torch.testing.assert_close(P.transpose(v), M.T @ v, rtol=1e-12, atol=1e-12)
    fold = P.__dict__["_ff_fold"]
    with torch.no_grad():
        P.inv_norms.mul_(2.0)
        P.B[:3].neg_()
    assert P.__dict__["_ff_fold"] is fold
    signs = torch.ones(9, dtype=F64)
    signs[:3] = -1
    torch.testing.assert_close(P.transpose(v), 2 * signs * (M.T @ v), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(P(theta), M @ (2 * signs * theta), rtol=1e-12, atol=1e-12)
    assert P.__dict__["_ff_fold"] is fold
    with torch.no_grad():
        P.G.mul_(3.0)  # the fold depends on G: rebuilt
    torch.testing.assert_close(P.transpose(v), 6 * signs * (M.T @ v), rtol=1e-12, atol=1e-12)
    assert P.__dict__["_ff_fold"] is not fold


@pytest.mark.parametrize("n_rows, n_cols", [(4, 50), (16, 16), (33, 1000)])
def test_csr_with_implicit_columns_matches_the_dense_matrix(n_rows, n_cols):
    from goldisk.projections._sparse import _CSRMatrix

    g = torch.Generator().manual_seed(n_rows)
    rows = torch.randint(0, n_rows, (n_cols,), generator=g, dtype=torch.int32)
    vals = torch.randn(n_cols, generator=g, dtype=F64)
    dense = torch.zeros(n_rows, n_cols, dtype=F64)
    dense[rows.long(), torch.arange(n_cols)] = vals
    A = _CSRMatrix(rows, None, vals, n_rows, n_cols)
    x = torch.randn(n_cols, generator=g, dtype=F64)
    X = torch.randn(3, n_cols, generator=g, dtype=F64)
    torch.testing.assert_close(A(x), dense @ x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(A(X), X @ dense.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(A.A.to_dense(), dense, rtol=0, atol=0)


@pytest.mark.parametrize("kind, buffer", [("sparse", "vals"), ("fastfood", "G"),
                                          ("fastfood", "Pi")])
def test_a_projection_built_in_inference_mode_follows_in_place_edits(kind, buffer):
    # inference tensors have no version counter: caches built from them could not see an
    # in-place edit (P^T v was off by up to 4.3 for |P^T v| ~ 3); they are rebuilt each time
    from goldisk.projections import make_projection

    theta, v = rand(5), rand(1000, seed=2)
    with torch.inference_mode():
        with pytest.warns(RuntimeWarning, match="rebuilt at every product"):
            P = make_projection(kind, 1000, 5, random_state=4)  # (Fastfood's norms warn)
            P(theta), P.transpose(v)
        b = getattr(P, buffer)
        if buffer == "Pi":
            b.copy_(b.flip(0))
        else:
            b.mul_(-3.0)
        y, z = P(theta).clone(), P.transpose(v).clone()
    Q = make_projection(kind, 1000, 5, random_state=0)  # same buffers, outside inference mode
    Q.load_state_dict({k: t.clone() if torch.is_tensor(t) else t
                       for k, t in P.state_dict().items()})
    M = Q.to_dense()
    torch.testing.assert_close(y, M @ theta, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z, M.T @ v, rtol=1e-12, atol=1e-12)
