"""SubspaceModule: only theta trains, hyperplanes move by P theta, hyperspheres keep |w|."""

import copy
import io
import math
import pickle

import pytest
import torch

from goldisk import SubspaceModule, radius
from goldisk._flat import parameter_vector
from goldisk.models import MLP
from goldisk.projections import make_projection


def make(kind="hyperplane", proj="dense", d=5, seed=0):
    torch.manual_seed(0)  # nn.Linear's own default init; the test's choice, not goldisk's
    net = MLP(6, (7,), 3).double()
    D = sum(p.numel() for p in net.parameters())
    return net, SubspaceModule(net, make_projection(proj, D, d, random_state=seed), kind=kind)


def test_only_theta_is_a_parameter_and_start_is_w0():
    net, sub = make()
    assert [n for n, _ in sub.named_parameters()] == ["theta"]
    x = torch.randn(4, 6, dtype=torch.float64)
    assert torch.allclose(sub(x), net(x))
    assert all(p.requires_grad for p in net.parameters())  # caller's module untouched


@pytest.mark.parametrize("proj", ["dense", "sparse", "fastfood"])
def test_hyperplane_point_is_w0_plus_P_theta(proj):
    net, sub = make(proj=proj)
    with torch.no_grad():
        sub.theta.copy_(torch.linspace(-1, 1, sub.d, dtype=torch.float64))
    M = sub.projection.to_dense()
    assert torch.allclose(sub.point(), parameter_vector(net) + M @ sub.theta, atol=1e-12)
    mat = sub.materialize()
    x = torch.randn(3, 6, dtype=torch.float64)
    assert torch.allclose(mat(x), sub(x))


def test_hypersphere_keeps_radius_during_adam_training():
    net, sub = make("hypersphere")
    r0 = radius(net)
    opt = torch.optim.Adam(sub.parameters(), lr=0.1)
    x, y = torch.randn(32, 6, dtype=torch.float64), torch.arange(32) % 3
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(sub(x), y)
        first = float(loss) if first is None else first
        loss.backward()
        opt.step()
        assert sub.radius() == pytest.approx(r0, rel=1e-12)
    assert float(loss) < first
    assert float(sub.theta.norm()) > 0.1


def test_gradient_flows_only_to_theta_and_equals_P_transpose_grad():
    net, sub = make()
    x, y = torch.randn(10, 6, dtype=torch.float64), torch.arange(10) % 3
    torch.nn.functional.cross_entropy(sub(x), y).backward()
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    g = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    assert torch.allclose(sub.theta.grad, sub.projection.to_dense().T @ g, atol=1e-12)


@pytest.mark.parametrize("proj", ["dense", "sparse", "fastfood"])
def test_hypersphere_gradient_is_the_chain_rule_through_the_normalization(proj):
    # theta.grad at a theta != 0 against J^T g: J the Jacobian of the closed form
    # w(theta) = r0 (w0 + M theta) / |w0 + M theta| (M = the dense matrix), g the gradient
    # of the plain module's loss at w(theta)
    net, sub = make("hypersphere", proj=proj)
    with torch.no_grad():
        sub.theta.copy_(torch.linspace(-0.4, 0.6, sub.d, dtype=torch.float64))
    x, y = torch.randn(10, 6, dtype=torch.float64), torch.arange(10) % 3
    torch.nn.functional.cross_entropy(sub(x), y).backward()
    w0, M = parameter_vector(net).detach(), sub.projection.to_dense()
    r0 = w0.norm()

    def point(theta):
        v = w0 + M @ theta
        return r0 * v / v.norm()

    J = torch.autograd.functional.jacobian(point, sub.theta.detach())
    mat = sub.materialize()
    torch.nn.functional.cross_entropy(mat(x), y).backward()
    g = torch.cat([p.grad.reshape(-1) for p in mat.parameters()])
    torch.testing.assert_close(sub.theta.grad, J.T @ g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("proj", ["dense", "sparse", "fastfood"])
def test_state_dict_deepcopy_pickle_round_trips(proj):
    net, sub = make("hypersphere", proj=proj)
    with torch.no_grad():
        sub.theta.add_(0.3)
    x = torch.randn(5, 6, dtype=torch.float64)
    ref = sub(x)
    assert torch.allclose(copy.deepcopy(sub)(x), ref)
    assert torch.allclose(pickle.loads(pickle.dumps(sub))(x), ref)
    _, other = make("hypersphere", proj=proj, seed=1)
    buf = io.BytesIO()
    torch.save(sub.state_dict(), buf)
    buf.seek(0)
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.allclose(other(x), ref)
    assert torch.allclose(sub.float()(x.float()), ref.float(), atol=1e-5)


def test_bad_input():
    net = MLP(6, (7,), 3)
    with pytest.raises(ValueError, match="kind"):
        SubspaceModule(net, make_projection("dense", 73, 2, random_state=0), kind="cube")
    with pytest.raises(ValueError, match="D=10"):
        SubspaceModule(net, make_projection("dense", 10, 2, random_state=0))
    zero = MLP(6, (7,), 3)
    for p in zero.parameters():
        torch.nn.init.zeros_(p)
    with pytest.raises(ValueError, match="radius 0"):
        SubspaceModule(zero, make_projection("dense", 73, 2, random_state=0), kind="hypersphere")


def test_wrapping_does_not_change_the_callers_projection():
    net = MLP(6, (7,), 3)  # float32
    P = make_projection("dense", 73, 2, random_state=0)  # float64
    SubspaceModule(net, P)
    assert P.weight.dtype == torch.float64
    # the module has a copy: changing it (dtype, loaded state) leaves the caller's alone
    same = make_projection("dense", 73, 2, random_state=0, dtype=torch.float32)
    sub = SubspaceModule(net, same)
    sub.double()
    other = SubspaceModule(net, make_projection("dense", 73, 2, random_state=5))
    other.float().load_state_dict(sub.float().state_dict())
    assert same.weight.dtype == torch.float32 and sub.projection is not same
    torch.testing.assert_close(other.projection.weight, same.weight, rtol=0, atol=0)
    assert SubspaceModule(net, same, share_projection=True).projection is same


def test_state_dict_holds_frozen_parameters_and_the_kind():
    def frozen_first(seed):
        torch.manual_seed(seed)
        net = MLP(6, (7,), 3).double()
        net.net[0].weight.requires_grad_(False)
        return net

    D = sum(p.numel() for p in frozen_first(0).parameters() if p.requires_grad)
    a = SubspaceModule(frozen_first(0), make_projection("sparse", D, 3, random_state=0))
    b = SubspaceModule(frozen_first(1), make_projection("sparse", D, 3, random_state=1))
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    sphere = SubspaceModule(frozen_first(0), make_projection("sparse", D, 3, random_state=0),
                            kind="hypersphere")
    with pytest.raises(ValueError, match="hypersphere"):
        b.load_state_dict(sphere.state_dict())
    older = {k: v for k, v in a.state_dict().items() if k != "_extra_state"}
    b.load_state_dict(older)  # saved before the kind was stored: loads, unchecked


def test_hypersphere_point_of_a_batch_of_thetas_is_each_point():
    _, sub = make("hypersphere")
    T = torch.randn(3, sub.d, dtype=torch.float64)
    batched = sub.point(T)
    torch.testing.assert_close(batched, torch.stack([sub.point(t) for t in T]))
    torch.testing.assert_close(batched.norm(dim=-1), sub.r0.expand(3))


@pytest.mark.parametrize("scale", [1e-22, 1e-30, 1e21])
def test_float32_hypersphere_radius_of_a_tiny_or_huge_init(scale):
    # the float32 squares of such weights underflow: r0 came out 15% short at 1e-22, and at
    # 1e-30 the module refused the init as if it were 0; at 1e21 they overflow
    from goldisk.models import MLP

    torch.manual_seed(0)
    net = MLP(4, (8,), 3)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    exact = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in net.parameters()))
    P = make_projection("sparse", sum(p.numel() for p in net.parameters()), 3, random_state=0,
                        dtype=torch.float32)
    m = SubspaceModule(net, P, kind="hypersphere")
    assert abs(float(m.r0) / exact - 1) < 1e-6
    with torch.no_grad():
        m.theta.copy_(torch.tensor([0.5, -1.0, 2.0]) * scale)
    assert m.point().dtype == torch.float32
    assert abs(m.radius() / exact - 1) < 1e-6
    assert abs(float(m.point().double().norm()) / exact - 1) < 1e-6


def test_a_frozen_tied_weight_stays_tied_after_a_move_and_a_load():
    # .to() gives each place of a frozen weight its own copy; load_state_dict then filled
    # only the persistent one and the non-persistent alias kept the old values (0.86 off)
    class FrozenAlias(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.out = torch.nn.Linear(4, 4), torch.nn.Linear(4, 3)
            self.l1.weight.requires_grad_(False)
            self.register_buffer("alias", self.l1.weight, persistent=False)

        def forward(self, x):
            return self.out(torch.tanh(self.l1(x)) + x @ self.alias)

    torch.manual_seed(0)
    src, dst = FrozenAlias().double(), FrozenAlias().double()
    D = sum(p.numel() for p in src.parameters() if p.requires_grad)
    a = SubspaceModule(src, make_projection("dense", D, 2, random_state=0))
    b = SubspaceModule(dst, make_projection("dense", D, 2, random_state=0)).float().double()
    b.load_state_dict(a.state_dict())
    X = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(b(X), a(X), rtol=1e-13, atol=1e-13)


def test_float32_norm_is_accurate_at_millions_of_parameters():
    # torch.linalg.vector_norm of the scaled float32 vector was 2.6e-4 off at D = 11M
    from goldisk._subspace import _norm

    w = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0))
    exact = float(w.double().norm())
    assert abs(float(_norm(w)) / exact - 1) < 1e-6
    assert abs(float(_norm(w[None] * 1e-25, keepdim=True)[0, 0]) / (exact * 1e-25) - 1) < 1e-6


def test_c06_share_projection_refuses_a_truthy_string():
    """Issue 17 case 6: share_projection="no" was taken as True (the caller's P shared)."""
    net = MLP(6, (7,), 3)
    P = make_projection("dense", 73, 2, random_state=0)
    for bad in ("no", "False", 0, None):
        with pytest.raises(TypeError, match="share_projection must be True or False"):
            SubspaceModule(net, P, share_projection=bad)
    import numpy as np

    assert SubspaceModule(net, P, share_projection=np.bool_(False)).projection is not P


def test_c12_a_users_matrix_is_a_projection_used_as_it_is():
    """Issue 17 case 12 / issue 16: a D x d tensor or array wherever a projection goes,
    columns not normalized; the result equals the hand-written w0 + M theta."""
    import numpy as np

    from goldisk import SubspaceProjector, subspace_hessian
    from goldisk.projections import DenseProjection

    torch.manual_seed(0)
    net = MLP(6, (7,), 3).double()
    M = np.random.default_rng(1).normal(size=(73, 4)) * 3.0  # not unit columns
    theta = torch.tensor([0.1, -0.2, 0.3, 0.05], dtype=torch.float64)
    for matrix in (M, torch.as_tensor(M), M[::-1].copy()[::-1]):  # (negative strides)
        sub = SubspaceModule(net, matrix)
        with torch.no_grad():
            sub.theta.copy_(theta)
        want = parameter_vector(net) + torch.as_tensor(M) @ theta
        torch.testing.assert_close(sub.point().detach(), want, rtol=1e-14, atol=1e-14)
    # subspace_hessian: the Hessian on the user's matrix = the one on a DenseProjection
    # holding the same matrix (loaded through its state dict, the old way)
    X = torch.randn(20, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(20) % 3
    P = DenseProjection(73, 4)
    state = P.state_dict()
    state["weight"] = torch.as_tensor(M)
    P.load_state_dict(state)
    H = subspace_hessian(net, X, y, M).H
    torch.testing.assert_close(H, subspace_hessian(net, X, y, P).H, rtol=1e-12, atol=1e-12)
    # ... and = M^T H_full M from the full-space Hessian (independent route)
    H_full = subspace_hessian(net, X, y, None).H
    torch.testing.assert_close(H, torch.as_tensor(M).T @ H_full @ torch.as_tensor(M),
                               rtol=1e-9, atol=1e-9)
    # the estimators' SubspaceProjector trains on exactly that matrix
    from goldisk import GoldilocksClassifier

    clf = GoldilocksClassifier(MLP, module__hidden=(7,), max_epochs=1, random_state=0,
                               subspace=SubspaceProjector(projection=M), dtype="float64")
    clf.fit(X.numpy().astype("float32"), y.numpy())
    np.testing.assert_array_equal(clf.projection_matrix(), M)
    # checked: shape (transposed named), finite, dtype, D
    with pytest.raises(ValueError, match=r"looks transposed: pass projection.T"):
        subspace_hessian(net, X, y, M.T)
    with pytest.raises(ValueError, match="NaN or infinite"):
        SubspaceModule(net, np.full((73, 2), np.nan))
    with pytest.raises(TypeError, match="real D x d matrix"):
        SubspaceModule(net, M.astype(complex))
    with pytest.raises(ValueError, match=r"\(D, d\) = \(73, d\)"):
        SubspaceModule(net, np.ones((70, 2)))
    with pytest.raises(TypeError, match="Projection.*or a D x d tensor"):
        SubspaceModule(net, "dense")
    with pytest.raises(ValueError, match="subspace__dim=2 but subspace__projection has d=4"):
        GoldilocksClassifier(MLP, module__hidden=(7,), max_epochs=0, subspace=SubspaceProjector(
            dim=2, projection=M)).fit(X.numpy().astype("float32"), y.numpy())


@pytest.mark.parametrize("scale", [1e-200, 1e160])
def test_hypersphere_radius_exact_at_extreme_float64_scales(scale):
    """The sphere's radius r0 = ||w0|| is a scaled norm: x1e-200 read 0, x1e160 inf."""
    torch.manual_seed(0)
    net = MLP(6, (7,), 3).double()
    ref = float(parameter_vector(net).norm()) * scale
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    sub = SubspaceModule(net, make_projection("dense", 73, 3, random_state=0), "hypersphere")
    with torch.no_grad():
        sub.theta.fill_(0.3 * scale)
    assert math.isclose(float(sub.r0), ref, rel_tol=1e-13)
    assert math.isclose(sub.radius(), ref, rel_tol=1e-13)


def test_c12_radius_sweep_on_a_users_matrix():
    """radius_sweep(projection=M): every init direction's subspace is M's first
    max(dims) columns; the rows' trace equals tr(M_k^T H M_k) by subspace_hessian."""
    import numpy as np

    from goldisk import subspace_hessian
    from goldisk.models import init_weights_
    from goldisk.sweep import radius_sweep

    torch.manual_seed(0)
    net = MLP(6, (7,), 3).double()
    M = np.random.default_rng(2).normal(size=(73, 5))
    X = torch.randn(15, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(15) % 3
    df = radius_sweep(net, X, y, radii=[1.0], dims=(2, 3), n_subspaces=1, projection=M,
                      progress=False, random_state=0)
    assert (df["projection"] == "matrix").all() and len(df) == 2
    # the same point by hand: the sweep's seed for subspace 0, its init, at r = r_ref
    from goldisk import reference_radius
    from goldisk._rng import check_random_state

    seeds = check_random_state(0).integers(0, 2**62, size=(1, 2))
    ref = copy.deepcopy(net)
    init_weights_(ref, "xavier", generator=torch.Generator().manual_seed(int(seeds[0, 0])))
    w0 = parameter_vector(ref)
    point = w0 * reference_radius(net, "xavier") / float(w0.norm())
    H = subspace_hessian(ref, X, y, M[:, :3], point=point).H
    for k in (2, 3):
        got = float(df.loc[df["dim"] == k, "trace"].iloc[0])
        assert math.isclose(got, float(torch.trace(H[:k, :k])), rel_tol=1e-10)
    with pytest.raises(ValueError, match=r"dims must be integers in \[1, D=5\]"):
        radius_sweep(net, X, y, radii=[1.0], dims=(6,), projection=M, progress=False)
