"""The contraction engine (goldisk/curvature/_contract.py) against brute force: the Hessian
of theta -> mean loss(w(theta)) by torch.autograd.functional.hessian in float64, with
w(theta) the hyperplane or hypersphere through w0, and against the reverse engine."""

import pytest
import torch
from conftest import brute_force_gauss_newton, reference_loss, tiny_problem
from torch import nn

import goldisk.curvature._contract as contract
import goldisk.curvature._hessian as hessian_mod
from goldisk._flat import ParamLayout, parameter_vector
from goldisk.curvature import subspace_gauss_newton, subspace_hessian
from goldisk.models import MLP, LeNet5, LeNet300100, SmallCNN
from goldisk.projections import make_projection

RTOL = 1e-10


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def theta_hessian(net, X, y, P, loss="cross_entropy", kind="hyperplane", scale=1.0):
    """Brute force: autograd's Hessian of the mean loss in theta, float64."""
    layout = ParamLayout(net)
    w0 = parameter_vector(net).double() * scale
    Pd = P.to_dense().double()

    def f(theta):
        w = w0 + Pd @ theta
        if kind == "hypersphere":
            w = w * (w0.norm() / w.norm())
        return reference_loss(layout.call(net, w, X), y, loss).mean()

    return torch.autograd.functional.hessian(f, torch.zeros(P.d, dtype=torch.float64))


def chain_problem(seed=0, n=30):
    """Nested Sequential, Flatten, every supported activation, a frozen bias."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(6, 5), nn.Sigmoid(),
        nn.Sequential(nn.Linear(5, 4), nn.LeakyReLU(0.1), nn.Linear(4, 4), nn.Identity()),
        nn.Tanh(), nn.Linear(4, 3),
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    net[3][0].bias.requires_grad_(False)
    X = torch.randn(n, 2, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    return net, X, y


class Tied(nn.Module):
    """A square layer applied twice and a weight shared by two layers (tied weights)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 3)
        self.c = nn.Linear(4, 4, bias=False)
        self.c.weight = self.a.weight
        self.seq = nn.Sequential(self.a, nn.Tanh(), self.a, nn.Tanh(), self.c, nn.ReLU(),
                                 self.b)

    def forward(self, x):
        return self.seq(x)


def tied_problem(seed=0, n=25):
    gen = torch.Generator().manual_seed(seed)
    net = Tied().double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.8)
    X = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    return net.seq, X, y


def goldisk_mlp(seed=0, bias=True, activation="tanh", n=20):
    gen = torch.Generator().manual_seed(seed)
    net = MLP(6, (5, 4), 3, activation=activation, bias=bias).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.6)
    X = torch.randn(n, 1, 2, 3, generator=gen, dtype=torch.float64)
    return net, X, torch.randint(0, 3, (n,), generator=gen)


def conv_chain(seed=0, n=12, act=nn.Tanh, bias=True):
    """Strided, padded and dilated convolutions, average pooling, Flatten."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=bias), act(), nn.AvgPool2d(2),
        nn.Conv2d(3, 4, 2, stride=2, padding=(1, 0), dilation=(1, 2), bias=bias), act(),
        nn.Flatten(), nn.Linear(8, 3, bias=bias),
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    X = torch.randn(n, 2, 6, 6, generator=gen, dtype=torch.float64)
    return net, X, torch.randint(0, 3, (n,), generator=gen)


def goldisk_cnn(seed=0, lenet=False, n=10):
    gen = torch.Generator().manual_seed(seed)
    net = (LeNet5(out_features=3, activation="tanh") if lenet
           else SmallCNN(image_size=5, channels=(2, 3), out_features=3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.3)
    size = 28 if lenet else 5
    X = torch.randn(n, size * size, generator=gen, dtype=torch.float64)  # flat: reshaped
    return net, X, torch.randint(0, 3, (n,), generator=gen)


PROBLEMS = {
    "conv-tanh": lambda: conv_chain(11),
    "conv-relu-bias-free": lambda: conv_chain(12, act=nn.ReLU, bias=False),
    "goldisk-SmallCNN": lambda: goldisk_cnn(13),
    "goldisk-LeNet5": lambda: goldisk_cnn(14, lenet=True),
    "tanh-mlp": lambda: tiny_problem(0),
    "relu-mlp": lambda: tiny_problem(1, act="relu", hidden=(6, 5)),
    "bias-free-relu": lambda: tiny_problem(2, act="relu", bias=False),
    "linear": lambda: tiny_problem(3, hidden=()),
    "chain": lambda: chain_problem(4),
    "tied": lambda: tied_problem(5),
    "goldisk-MLP": lambda: goldisk_mlp(6),
    "goldisk-MLP-bias-free-relu": lambda: goldisk_mlp(7, bias=False, activation="relu"),
}


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("kind", ["hyperplane", "hypersphere"])
def test_contract_matches_brute_force_and_reverse(problem, kind):
    net, X, y = PROBLEMS[problem]()
    D = ParamLayout(net).D
    P = make_projection("dense", D, min(D, 7), random_state=1)
    res = subspace_hessian(net, X, y, P, kind=kind, method="contract", batch_size=16)
    ref = theta_hessian(net, X, y, P, kind=kind)
    assert rel_err(res.H, ref) < RTOL
    rev = subspace_hessian(net, X, y, P, kind=kind, method="reverse")
    assert rel_err(res.H, rev.H) < RTOL
    assert rel_err(res.G, rev.G) < RTOL
    assert abs(float(res.loss - rev.loss)) < 1e-12
    if kind == "hyperplane" and D <= 5000:  # G against an explicit J^T A J, projected
        Pd = P.to_dense()
        assert rel_err(res.G, Pd.T @ brute_force_gauss_newton(net, X, y) @ Pd) < RTOL


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_losses_scales_and_sub_batches(monkeypatch, loss):
    net, X, _ = tiny_problem(8, hidden=(6, 5))
    y = (torch.randn(len(X), 3, generator=torch.Generator().manual_seed(0)).double()
         if loss == "mse" else torch.arange(len(X)) % 3)
    P = make_projection("dense", ParamLayout(net).D, 6, random_state=2)
    scales = [0.5, 1.0, 3.0]
    monkeypatch.setattr(contract, "TANGENT_BYTES", 1)  # sub-batches of 8 samples
    res = subspace_hessian(net, X, y, P, loss=loss, scales=scales, batch_size=13,
                           method="contract")
    for i, s in enumerate(scales):
        assert rel_err(res.H[i], theta_hessian(net, X, y, P, loss, scale=s)) < RTOL
    rev = subspace_hessian(net, X, y, P, loss=loss, scales=scales, method="reverse")
    assert rel_err(res.G, rev.G) < RTOL
    assert torch.allclose(res.loss, rev.loss, rtol=1e-13, atol=0)


@pytest.mark.parametrize("problem", ["tanh-mlp", "relu-mlp", "chain", "tied", "conv-tanh",
                                     "goldisk-MLP"])
@pytest.mark.parametrize("density", [None, "li"])
def test_sparse_projections_on_hyperplanes(problem, density):
    net, X, y = PROBLEMS[problem]()
    D = ParamLayout(net).D
    P = make_projection("sparse" if density is None else "sparse-li", D, 6, random_state=7)
    res = subspace_hessian(net, X, y, P, method="contract", batch_size=16)
    assert rel_err(res.H, theta_hessian(net, X, y, P)) < RTOL
    rev = subspace_hessian(net, X, y, P, method="reverse")
    assert rel_err(res.G, rev.G) < RTOL
    with pytest.raises(ValueError, match="sparse ones on hyperplanes"):
        subspace_hessian(net, X, y, P, kind="hypersphere", method="contract")


def test_one_direction_on_the_sphere_leaves_the_projection_alone():
    net, X, y = tiny_problem(15, hidden=())
    P = make_projection("dense", ParamLayout(net).D, 1, random_state=5)
    before = P.weight.clone()
    res = subspace_hessian(net, X, y, P, kind="hypersphere", method="contract")
    assert torch.equal(P.weight, before)
    assert rel_err(res.H, theta_hessian(net, X, y, P, kind="hypersphere")) < RTOL


def test_float32_and_lenet():
    net = LeNet300100(in_features=12, out_features=4, activation="tanh")
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(40, 12, generator=gen)
    y = torch.randint(0, 4, (40,), generator=gen)
    D = ParamLayout(net).D
    P = make_projection("dense", D, 8, random_state=3)
    ref = subspace_hessian(net, X, y, P, method="reverse", dtype=torch.float64)
    res = subspace_hessian(net, X, y, P, method="contract", dtype=torch.float64)
    assert rel_err(res.H, ref.H) < RTOL and rel_err(res.G, ref.G) < RTOL
    res32 = subspace_hessian(net, X, y, P, method="contract", dtype=torch.float32)
    assert res32.H.dtype == torch.float32
    assert rel_err(res32.H.double(), ref.H) < 1e-4
    assert rel_err(res32.G.double(), ref.G) < 1e-4
    net, X, y = conv_chain(16)  # convolutions in float32 too
    P = make_projection("dense", ParamLayout(net).D, 6, random_state=6)
    ref = theta_hessian(net, X, y, P)
    res32 = subspace_hessian(net, X, y, P, method="contract", dtype=torch.float32)
    assert rel_err(res32.H.double(), ref) < 1e-4


def test_auto_picks_contract_only_where_it_applies(monkeypatch):
    calls = []
    real = hessian_mod.contract_hessian
    monkeypatch.setattr(hessian_mod, "contract_hessian",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    net, X, y = tiny_problem(9)
    D = ParamLayout(net).D
    dense = make_projection("dense", D, 5, random_state=0)
    subspace_hessian(net, X, y, dense)
    assert calls == [1]
    # not a chain: max pooling, a Sequential subclass with its own forward; Fastfood P
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(8, 3)).double()
    Xc = torch.randn(10, 1, 4, 4, generator=torch.Generator().manual_seed(0)).double()
    yc = torch.arange(10) % 3

    class Doubled(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    doubled = Doubled(*net)
    fastfood = make_projection("fastfood", D, 5, random_state=0)
    for model, Xi, yi, P in [(conv, Xc, yc, None), (doubled, X, y, dense), (net, X, y, fastfood)]:
        if P is None:
            P = make_projection("dense", ParamLayout(model).D, 5, random_state=0)
        auto = subspace_hessian(model, Xi, yi, P)
        assert rel_err(auto.H, theta_hessian(model, Xi, yi, P)) < 1e-8
        with pytest.raises(ValueError, match="method='contract' cannot handle"):
            subspace_hessian(model, Xi, yi, P, method="contract")
    assert calls == [1]


def test_gauss_newton_alone():
    net, X, y = chain_problem(10)
    P = make_projection("dense", ParamLayout(net).D, 6, random_state=4)
    both = subspace_hessian(net, X, y, P, scales=[1.0, 2.0], kind="hypersphere")
    alone = subspace_gauss_newton(net, X, y, P, scales=[1.0, 2.0], kind="hypersphere")
    assert alone.H is None and alone.Hterm is None
    assert rel_err(alone.G, both.G) < RTOL
    assert torch.equal(alone.loss, both.loss)
    # a model outside the engine: the other engines' G, H dropped
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(8, 3)).double()
    Xc = torch.randn(10, 1, 4, 4, generator=torch.Generator().manual_seed(0)).double()
    yc = torch.arange(10) % 3
    Pc = make_projection("dense", ParamLayout(conv).D, 4, random_state=0)
    Pd = Pc.to_dense()
    g = subspace_gauss_newton(conv, Xc, yc, Pc)
    assert g.H is None
    assert rel_err(g.G, Pd.T @ brute_force_gauss_newton(conv, Xc, yc) @ Pd) < 1e-10
    assert subspace_gauss_newton(conv, Xc, yc, Pc).block(2).G.shape == (2, 2)
