"""Every subspace-Hessian path against brute force: the full Hessian by
torch.autograd.functional.hessian on the flattened parameters, projected by hand."""

import pytest
import torch
from conftest import brute_force_gauss_newton, brute_force_hessian, tiny_problem

from goldisk._flat import ParamLayout, parameter_vector
from goldisk.curvature import subspace_hessian
from goldisk.projections import make_projection

RTOL = 1e-8
METHODS = ["reverse", "forward"]


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def dense_of(P):
    return P.to_dense().double()


def conv_problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Tanh(), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(2 * 2 * 2, 3),
    ).double()
    X = torch.randn(12, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=gen)
    return net, X, y


class TinyResNet(torch.nn.Module):
    """ResNet-18's ingredients at toy size: bias-free convolutions, eval-mode BatchNorm with
    non-trivial running statistics, a residual connection, ReLU and global average pooling."""

    def __init__(self, gen):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn0 = torch.nn.BatchNorm2d(3)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(3)
        self.head = torch.nn.Linear(3, 3)
        self.double().eval()
        with torch.no_grad():
            for t in [*self.parameters(), self.bn0.running_mean, self.bn1.running_mean]:
                t.copy_(torch.randn(t.shape, generator=gen, dtype=torch.float64) * 0.5)
            for bn in (self.bn0, self.bn1):
                bn.running_var.copy_(torch.rand(3, generator=gen, dtype=torch.float64) + 0.5)

    def forward(self, x):
        h = torch.relu(self.bn0(self.stem(x)))
        h = torch.relu(h + self.bn1(self.conv(h)))
        return self.head(h.mean((2, 3)))


def resnet_problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    net = TinyResNet(gen)
    X = torch.randn(10, 1, 5, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=gen)
    return net, X, y


PROBLEMS = {
    "tanh-mlp": lambda: tiny_problem(0),
    "relu-mlp": lambda: tiny_problem(1, act="relu", hidden=(6, 5)),
    "bias-free-relu": lambda: tiny_problem(2, act="relu", bias=False),
    "linear": lambda: tiny_problem(3, hidden=()),
    "conv": lambda: conv_problem(4),
    "resnet-block": lambda: resnet_problem(5),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("kind", ["dense", "sparse", "sparse-li", "fastfood"])
def test_hyperplane_hessian_matches_brute_force(problem, kind, method):
    net, X, y = PROBLEMS[problem]()
    D = ParamLayout(net).D
    P = make_projection(kind, D, min(6, D), random_state=1)
    res = subspace_hessian(net, X, y, P, batch_size=16, method=method, chunk_size=4)
    M = dense_of(P)
    H_ref = M.T @ brute_force_hessian(net, X, y) @ M
    G_ref = M.T @ brute_force_gauss_newton(net, X, y) @ M
    assert rel_err(res.H, H_ref) <= RTOL
    assert rel_err(res.G, G_ref) <= RTOL
    assert torch.allclose(res.Hterm, H_ref - G_ref, atol=1e-10 * float(H_ref.norm()))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("problem", ["tanh-mlp", "conv"])
def test_full_space_is_exact(problem, method):
    net, X, y = PROBLEMS[problem]()
    res = subspace_hessian(net, X, y, None, method=method)
    assert rel_err(res.H, brute_force_hessian(net, X, y)) <= RTOL
    assert rel_err(res.G, brute_force_gauss_newton(net, X, y)) <= RTOL
    P = make_projection("identity", ParamLayout(net).D, ParamLayout(net).D)
    assert rel_err(subspace_hessian(net, X, y, P).H, res.H) <= 1e-12


def test_linear_model_has_zero_h_term():
    net, X, y = tiny_problem(5, hidden=())
    res = subspace_hessian(net, X, y, None)
    assert float(res.Hterm.abs().max()) <= 1e-13 * float(res.H.abs().max())
    assert float(res.H.norm()) > 0


@pytest.mark.parametrize("method", METHODS)
def test_mse_loss_matches_brute_force(method):
    net, X, _ = tiny_problem(6)
    target = torch.randn(len(X), 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    P = make_projection("dense", ParamLayout(net).D, 5, random_state=0)
    res = subspace_hessian(net, X, target, P, loss="mse", method=method)
    M = dense_of(P)
    assert rel_err(res.H, M.T @ brute_force_hessian(net, X, target, "mse") @ M) <= RTOL
    assert rel_err(res.G, M.T @ brute_force_gauss_newton(net, X, target, "mse") @ M) <= RTOL


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["dense", "sparse", "fastfood"])
def test_hypersphere_hessian_matches_brute_force(kind, method):
    # sparse and Fastfood columns are not orthogonal: the sphere's curvature term then
    # involves the Gram matrix P^T P, which a dense orthonormal P would hide
    net, X, y = tiny_problem(7)
    layout = ParamLayout(net)
    w0 = parameter_vector(net)
    P = make_projection(kind, layout.D, 4, random_state=2)
    M = dense_of(P)

    def f(theta):
        v = w0 + M @ theta
        w = v * (w0.norm() / v.norm())
        z = layout.call(net, w, X)
        return torch.nn.functional.cross_entropy(z, y)

    H_ref = torch.autograd.functional.hessian(f, torch.zeros(4, dtype=torch.float64))
    res = subspace_hessian(net, X, y, P, kind="hypersphere", method=method, chunk_size=3,
                           batch_size=9)
    assert rel_err(res.H, H_ref) <= RTOL
    J = torch.autograd.functional.jacobian(
        lambda t: layout.call(net, (w0 + M @ t) * (w0.norm() / (w0 + M @ t).norm()), X),
        torch.zeros(4, dtype=torch.float64))  # (N, C, d): the logits on the sphere
    p = torch.softmax(net(X), -1).detach()
    A = (torch.diag_embed(p) - p[..., None] * p[..., None, :]) / len(X)
    G_ref = torch.einsum("nci,ncd,ndj->ij", J, A, J)
    assert rel_err(res.G, G_ref) <= RTOL


@pytest.mark.parametrize("method", METHODS)
def test_batching_chunking_and_scales_do_not_change_the_result(method):
    net, X, y = tiny_problem(8, n=50)
    P = make_projection("dense", ParamLayout(net).D, 5, random_state=3)
    full = subspace_hessian(net, X, y, P, batch_size=1000, method=method)
    small = subspace_hessian(net, X, y, P, batch_size=7, chunk_size=2, method=method)
    assert rel_err(small.H, full.H) <= 1e-12 and rel_err(small.G, full.G) <= 1e-12
    # the mean loss over all mini-batches, against torch's own on the whole set
    mean_loss = float(torch.nn.functional.cross_entropy(net(X), y))
    for res in (small, full):
        assert abs(float(res.loss) - mean_loss) <= 1e-12
    w0 = parameter_vector(net)
    looped = subspace_hessian(net, X, y, P, scales=[0.5, 2.0, 3.0], scale_chunk=1,
                              method=method)
    vectorized = subspace_hessian(net, X, y, P, scales=[0.5, 2.0, 3.0], scale_chunk=2,
                                  batch_size=20)  # auto: forward, radii vectorized
    for i, s in enumerate([0.5, 2.0, 3.0]):
        one = subspace_hessian(net, X, y, P, point=w0 * s)
        for both in (looped, vectorized):
            assert rel_err(both.H[i], one.H) <= 1e-12
            assert rel_err(both.G[i], one.G) <= 1e-12
            assert abs(float(both.loss[i] - one.loss)) <= 1e-12


def test_nested_dimensions_are_leading_blocks():
    net, X, y = tiny_problem(9)
    P = make_projection("dense", ParamLayout(net).D, 6, random_state=4)
    res = subspace_hessian(net, X, y, P)
    M = dense_of(P)[:, :3]
    H_ref = M.T @ brute_force_hessian(net, X, y) @ M
    assert rel_err(res.block(3).H, H_ref) <= RTOL


def test_loss_value_and_bad_input():
    net, X, y = tiny_problem(10)
    P = make_projection("dense", ParamLayout(net).D, 3, random_state=0)
    res = subspace_hessian(net, X, y, P)
    ref = float(torch.nn.functional.cross_entropy(net(X), y).detach())
    assert abs(float(res.loss) - ref) < 1e-12
    with pytest.raises(ValueError, match="kind"):
        subspace_hessian(net, X, y, P, kind="torus")
    with pytest.raises(ValueError, match="empty"):
        subspace_hessian(net, X[:0], y[:0], P)
    with pytest.raises(ValueError, match="projection maps to D"):
        subspace_hessian(net, X, y, make_projection("dense", 10, 3, random_state=0))


def test_reverse_blocks_stay_small_and_below_d_for_implicit_projections():
    from goldisk.curvature._reverse import MMAP_THRESHOLD_BYTES, reverse_chunk

    net = torch.nn.Sequential(torch.nn.Linear(300, 200), torch.nn.ReLU(),
                              torch.nn.Linear(200, 10)).double()
    layout = ParamLayout(net)
    w, xb = parameter_vector(net), torch.zeros(500, 300, dtype=torch.float64)
    cpu = torch.device("cpu")
    c = reverse_chunk(net, layout, w, xb, 100, cpu)
    per_dir = max(layout.D, 500 * 200) * 8
    assert c * per_dir <= MMAP_THRESHOLD_BYTES < (c + 1) * per_dir
    c = reverse_chunk(net, layout, w, xb[:100], 100, cpu)  # here a D-vector is the larger
    per_dir = max(layout.D, 100 * 200) * 8
    assert layout.D > 100 * 200 and c * per_dir <= MMAP_THRESHOLD_BYTES < (c + 1) * per_dir
    assert reverse_chunk(net, layout, w, xb[:2], 6, cpu) == 6  # small blocks: all at once
    assert reverse_chunk(net, layout, w, xb[:2], 6, cpu, dense=False) == 3  # never d x D
    assert reverse_chunk(net, layout, w, xb[:2], 1, cpu, dense=False) == 1


def test_method_and_chunk_validation():
    net, X, y = tiny_problem(11)
    P = make_projection("dense", ParamLayout(net).D, 3, random_state=0)
    with pytest.raises(ValueError, match="method must be one of"):
        subspace_hessian(net, X, y, P, method="magic")
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        subspace_hessian(net, X, y, P, chunk_size=0)
    with pytest.raises(ValueError, match="scale_chunk must be a positive integer"):
        subspace_hessian(net, X, y, P, scale_chunk=1.5)


@pytest.mark.parametrize("gauss_newton", [True, False])
@pytest.mark.parametrize("problem", ["relu-mlp", "resnet-block"])
@pytest.mark.parametrize("loop_max", [0, 2**62])
def test_batched_and_looped_double_backward_match_brute_force(monkeypatch, loop_max, problem,
                                                             gauss_newton):
    import goldisk.curvature._reverse as rev

    monkeypatch.setattr(rev, "LOOP_MAX", loop_max)
    net, X, y = PROBLEMS[problem]()
    P = make_projection("sparse", ParamLayout(net).D, 6, random_state=5)
    res = subspace_hessian(net, X, y, P, method="reverse", chunk_size=4, batch_size=16,
                           gauss_newton=gauss_newton)
    M = dense_of(P)
    assert rel_err(res.H, M.T @ brute_force_hessian(net, X, y) @ M) <= RTOL
    if gauss_newton:
        assert rel_err(res.G, M.T @ brute_force_gauss_newton(net, X, y) @ M) <= RTOL
    else:
        assert res.G is None


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_losses_and_their_logit_derivatives_match_torch(loss):
    # goldisk's closed forms against torch's F.cross_entropy / F.mse_loss and autograd
    from conftest import reference_logit_gradient, reference_logit_hessian, reference_loss

    from goldisk.curvature import logit_gradient, logit_hessian, per_sample_loss

    gen = torch.Generator().manual_seed(5)
    z = torch.randn(9, 4, generator=gen, dtype=torch.float64) * 3
    y = (torch.randint(0, 4, (9,), generator=gen) if loss == "cross_entropy"
         else torch.randn(9, 4, generator=gen, dtype=torch.float64))
    torch.testing.assert_close(per_sample_loss(z, y, loss), reference_loss(z, y, loss),
                               rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(logit_gradient(z, y, loss), reference_logit_gradient(z, y, loss),
                               rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(logit_hessian(z, y, loss), reference_logit_hessian(z, y, loss),
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("method", METHODS)
def test_hypersphere_hessian_on_tangent_directions_has_the_spheres_curvature(method):
    # for orthonormal directions tangent at w0 (P^T w0 = 0), the Hessian on the sphere is
    # P^T H P - (g . u) / r I: the sphere's curvature, not the loss's growth with r
    # (why Fort's hyperplane zone is absent on hyperspheres; docs/engine.md)
    net, X, y = tiny_problem(4)
    w0 = parameter_vector(net)
    r, u = w0.norm(), w0 / w0.norm()
    A = torch.randn(len(w0), 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    Q, _ = torch.linalg.qr(A - u[:, None] * (u @ A))
    P = make_projection("dense", len(w0), 5, random_state=0)
    with torch.no_grad():
        P.weight.copy_(Q)
    H = brute_force_hessian(net, X, y)
    layout = ParamLayout(net)
    g = torch.autograd.functional.jacobian(
        lambda w: torch.nn.functional.cross_entropy(layout.call(net, w, X), y), w0)
    expected = Q.T @ H @ Q - float(g @ u) / float(r) * torch.eye(5, dtype=torch.float64)
    res = subspace_hessian(net, X, y, P, kind="hypersphere", method=method)
    assert rel_err(res.H, expected) <= RTOL
