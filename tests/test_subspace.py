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
