"""Unusual but legitimate models against hand-built float64 references: tied weights,
parameters that do not reach the output, frozen parameters, integer inputs (embeddings),
weight tensors with other names, and the probe's treatment of submodule modes.

Each reference builds the flat vector of the trainable parameters by hand (no goldisk
code) and differentiates ``F.cross_entropy(functional_call(net, ...), y)`` with
``torch.autograd.functional``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import goldisk.curvature._reverse as reverse
from goldisk import (
    CurvatureProbe,
    SubspaceModule,
    hutchinson,
    layer_reference_radii,
    model_state,
    radius,
    reference_radius,
    rescale_,
    subspace_hessian,
)
from goldisk._flat import trainable_parameters
from goldisk._rng import torch_generator
from goldisk.projections import make_projection

F64 = torch.float64


def flat_problem(net, X, y):
    """``(f, w0, unflatten)`` over the parameters with ``requires_grad``, each once."""
    seen, names = set(), []
    for name, p in net.named_parameters(remove_duplicate=False):
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            names.append(name)
    params = dict(net.named_parameters(remove_duplicate=False))
    shapes = [params[n].shape for n in names]

    def unflatten(w):
        out, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            k = math.prod(s)
            out[n] = w[i : i + k].reshape(s)
            i += k
        return out

    def f(w):  # functional_call ties weights: one name moves every place of a shared tensor
        return F.cross_entropy(functional_call(net, unflatten(w), (X,)), y)

    w0 = torch.cat([params[n].detach().reshape(-1) for n in names])
    return f, w0, unflatten


def gauss_newton(net, X, y, w0, unflatten):
    J = torch.autograd.functional.jacobian(
        lambda w: functional_call(net, unflatten(w), (X,)), w0)  # (N, C, D)
    p = torch.softmax(functional_call(net, unflatten(w0), (X,)), dim=1)
    A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("ncd,nce,nef->df", J, A, J) / len(X)


def data(n=30, d=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randint(0, classes, (n,), generator=g)


class Tied(nn.Module):
    """``l2`` reuses ``l1``'s weight (one Parameter in two layers)."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.out = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.l2.weight = self.l1.weight

    def forward(self, x):
        return self.out(torch.tanh(self.l2(torch.tanh(self.l1(x)))))


class TwoNames(nn.Module):
    """One Parameter registered under two names of the same module."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.randn(6, 3) * 0.5)
        self.register_parameter("b", self.a)
        self.c = nn.Parameter(torch.randn(3) * 0.1)

    def forward(self, x):
        return torch.tanh(x @ self.a) @ torch.eye(3, dtype=x.dtype) + x @ self.b + self.c


class Unused(nn.Module):
    """An ``aux`` head that ``forward`` never calls."""

    def __init__(self):
        super().__init__()
        self.a, self.o, self.aux = nn.Linear(6, 5), nn.Linear(5, 3), nn.Linear(5, 2)

    def forward(self, x):
        return self.o(torch.tanh(self.a(x)))


@pytest.mark.parametrize("make", [Tied, TwoNames], ids=["tied-layers", "two-names"])
def test_subspace_module_moves_a_shared_weight_everywhere(make):
    torch.manual_seed(0)
    net = make().double()
    X, y = data()
    f, w0, unflatten = flat_problem(net, X, y)
    P = make_projection("dense", w0.numel(), 4, random_state=0)
    M = P.to_dense()
    sub = SubspaceModule(net, P)
    theta = torch.randn(4, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        sub.theta.copy_(theta)
    w = w0 + M @ theta
    torch.testing.assert_close(sub(X), functional_call(net, unflatten(w), (X,)),
                               rtol=1e-13, atol=1e-13)
    (g_theta,) = torch.autograd.grad(F.cross_entropy(sub(X), y), sub.theta)
    g_w = torch.autograd.functional.jacobian(f, w)
    torch.testing.assert_close(g_theta, M.T @ g_w, rtol=1e-12, atol=1e-13)
    # the Hessian of the function SubspaceModule trains is the one the engine measures
    H_sub = torch.autograd.functional.hessian(
        lambda t: F.cross_entropy(functional_call(sub, {"theta": t}, (X,)), y),
        torch.zeros(4, dtype=F64))
    H_ref = M.T @ torch.autograd.functional.hessian(f, w0) @ M
    torch.testing.assert_close(H_sub, H_ref, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(subspace_hessian(net, X, y, P).H, H_ref, rtol=1e-10, atol=1e-13)
    m = sub.materialize()
    if make is Tied:
        assert m.l2.weight is m.l1.weight
    else:
        assert m.b is m.a
    torch.testing.assert_close(m(X), sub(X), rtol=0, atol=0)


@pytest.mark.parametrize("method, loop_max", [("reverse", 2**62), ("reverse", 0),
                                              ("forward", None)],
                         ids=["reverse-looped", "reverse-batched", "forward"])
def test_a_parameter_that_does_not_reach_the_output_has_zero_curvature(monkeypatch, loop_max,
                                                                         method):
    # the batched double backward (GPU path, LOOP_MAX = 0) returns the zero gradient of
    # an unused parameter without its batch dimension
    if loop_max is not None:
        monkeypatch.setattr(reverse, "LOOP_MAX", loop_max)
    torch.manual_seed(0)
    net = Unused().double()
    X, y = data()
    f, w0, unflatten = flat_problem(net, X, y)
    H = torch.autograd.functional.hessian(f, w0)
    G = gauss_newton(net, X, y, w0, unflatten)
    aux = slice(w0.numel() - 12, w0.numel())  # aux.weight (2 x 5) and aux.bias (2)
    assert H[aux].abs().max() == 0 and H[:, aux].abs().max() == 0
    res = subspace_hessian(net, X, y, None, method=method, batch_size=11)
    torch.testing.assert_close(res.H, H, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(res.G, G, rtol=1e-10, atol=1e-13)
    P = make_projection("sparse", w0.numel(), 5, random_state=2)
    M = P.to_dense()
    sub = subspace_hessian(net, X, y, P, method=method, batch_size=11)
    torch.testing.assert_close(sub.H, M.T @ H @ M, rtol=1e-10, atol=1e-13)
    if method == "reverse":  # hutchinson is reverse-only: the probe means of the exact H, G
        est = hutchinson(net, X, y, n_probes=6, random_state=3, batch_size=11, chunk_size=4)
        V = torch.randint(0, 2, (6, w0.numel()), generator=torch_generator(3)).double() * 2 - 1
        for prefix, A in (("", H), ("g_", G)):
            assert est[prefix + "trace"] == pytest.approx(float((V * (V @ A)).sum(-1).mean()),
                                                          rel=1e-9)


def _frozen_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    net[0].weight.requires_grad_(False)
    return net


def test_frozen_parameters_are_constants_of_the_measured_function():
    net = _frozen_net()
    X, y = data()
    f, w0, unflatten = flat_problem(net, X, y)  # 0.bias, 2.weight, 2.bias: 5 + 15 + 3
    assert w0.numel() == 23
    H = torch.autograd.functional.hessian(f, w0)
    for method in ("reverse", "forward"):
        res = subspace_hessian(net, X, y, None, method=method)
        torch.testing.assert_close(res.H, H, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(res.G, gauss_newton(net, X, y, w0, unflatten),
                                   rtol=1e-10, atol=1e-13)
    est = hutchinson(net, X, y, n_probes=5, random_state=0)
    V = torch.randint(0, 2, (5, 23), generator=torch_generator(0)).double() * 2 - 1
    assert est["trace"] == pytest.approx(float((V * (V @ H)).sum(-1).mean()), rel=1e-9)
    # radius, rescaling and the reference radius are over the same trainable vector
    assert radius(net) == pytest.approx(float(w0.norm()), rel=1e-14)
    frozen = net[0].weight.detach().clone()
    rescale_(net, 3.0)
    assert radius(net) == pytest.approx(3.0, rel=1e-12) and torch.equal(net[0].weight, frozen)
    assert reference_radius(net, "xavier") == pytest.approx(math.sqrt(15 * 2 / 8), rel=1e-14)


def test_subspace_module_keeps_frozen_parameters_fixed_and_frozen():
    net = _frozen_net()
    X, y = data()
    f, w0, unflatten = flat_problem(net, X, y)
    P = make_projection("dense", 23, 3, random_state=0)
    sub = SubspaceModule(net, P)
    assert [n for n, _ in sub.named_parameters()] == ["theta"]
    with torch.no_grad():
        sub.theta.fill_(0.7)
    w = w0 + P.to_dense() @ sub.theta.detach()
    torch.testing.assert_close(sub(X), functional_call(net, unflatten(w), (X,)),
                               rtol=1e-13, atol=1e-13)
    m = sub.materialize()
    assert not m[0].weight.requires_grad and torch.equal(m[0].weight, net[0].weight)
    assert m[0].bias.requires_grad and [n for n, _ in m.named_parameters()] == [
        n for n, _ in net.named_parameters()]
    torch.testing.assert_close(m(X), sub(X), rtol=0, atol=0)


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.out = nn.Embedding(10, 4), nn.Linear(12, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.emb(x).flatten(1)))


@pytest.mark.parametrize("method", ["reverse", "forward"])
def test_integer_inputs_reach_an_embedding_as_indices(method):
    torch.manual_seed(0)
    net = Tokens().double()
    g = torch.Generator().manual_seed(0)
    X, y = torch.randint(0, 10, (30, 3), generator=g), torch.randint(0, 3, (30,), generator=g)
    f, w0, unflatten = flat_problem(net, X, y)
    H = torch.autograd.functional.hessian(f, w0)
    res = subspace_hessian(net, X.numpy().astype("int32"), y, None, method=method, batch_size=7)
    torch.testing.assert_close(res.H, H, rtol=1e-10, atol=1e-13)
    with torch.no_grad():
        loss = float(F.cross_entropy(net(X), y))
    assert model_state(net, X, y)["loss"] == pytest.approx(loss, rel=1e-13)
    # integer X for a model taking floats is still cast (as before)
    mlp = nn.Sequential(nn.Linear(3, 3)).double()
    f2, w2, _ = flat_problem(mlp, X.double(), y)
    torch.testing.assert_close(subspace_hessian(mlp, X, y, None).H,
                               torch.autograd.functional.hessian(f2, w2), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("make", [lambda: nn.MultiheadAttention(8, 2), lambda: nn.LSTM(4, 6)],
                         ids=["attention", "lstm"])
def test_weights_only_selects_every_tensor_of_two_or_more_dimensions(make):
    torch.manual_seed(0)
    m = make().double()
    weights = [p for p in m.parameters() if p.dim() > 1]
    others = [p.detach().clone() for p in m.parameters() if p.dim() <= 1]
    assert radius(m, weights_only=True) == pytest.approx(
        math.sqrt(sum(float(p.pow(2).sum()) for p in weights)), rel=1e-14)
    rescale_(m, 2.0, weights_only=True)
    assert radius(m, weights_only=True) == pytest.approx(2.0, rel=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(
        others, [p for p in m.parameters() if p.dim() <= 1], strict=True))


def test_a_shared_weight_counts_once_in_reference_radius_and_per_layer_rescaling():
    torch.manual_seed(0)
    net = Tied().double()
    # l1 (= l2's weight, 6 x 6) once, out 3 x 6; Xavier sigma^2 = 2 / (fan_in + fan_out)
    assert reference_radius(net, "xavier") == pytest.approx(
        math.sqrt(36 * 2 / 12 + 18 * 2 / 9), rel=1e-14)
    rescale_(net, 5.0, mode="per_layer")
    layer = math.sqrt(float(net.l1.weight.pow(2).sum() + net.l1.bias.pow(2).sum()))
    # target * r_ref(l1) / r_ref(net) with r_ref(l1)^2 = 6, r_ref(out)^2 = 4
    assert layer == pytest.approx(5.0 * math.sqrt(6 / 10), rel=1e-12)


def test_probe_restores_each_submodules_own_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)).double()
    net.train()
    net[1].eval()  # a frozen BatchNorm in a training network
    X, y = data()
    table = CurvatureProbe(dim=3, n_subspaces=1, random_state=0).measure(net, X, y)
    assert len(table) == 1
    assert [m.training for m in net.modules()] == [True, True, False, True, True]


def test_reference_radius_counts_normalization_scales_at_one():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 36, 10), nn.LayerNorm(10), nn.GroupNorm(2, 10),
                        nn.Linear(10, 3))
    # He: 2 / fan_in; conv fan_in = 9, linear 144 and 10; scales 4 + 10 + 10 at value 1
    expected = math.sqrt(36 * 2 / 9 + 1440 * 2 / 144 + 30 * 2 / 10 + 4 + 10 + 10)
    assert reference_radius(net, "he") == pytest.approx(expected, rel=1e-14)
    # a fresh network at the default init has every scale at 1: its scale block is exact
    scales = sum(float(m.weight.pow(2).sum()) for m in (net[1], net[5], net[6]))
    assert scales == 24.0
    net[1].weight.requires_grad_(False)  # frozen: not part of w, not of the reference
    assert reference_radius(net, "he") == pytest.approx(math.sqrt(expected**2 - 4), rel=1e-14)


@pytest.mark.parametrize("wrap", [
    lambda m: torch.nn.utils.parametrizations.spectral_norm(m),
    lambda m: torch.nn.utils.parametrizations.orthogonal(m)], ids=["spectral", "orthogonal"])
def test_parametrized_layers_each_count_once_in_the_reference_radius(wrap):
    # a parametrized layer's weight is a new tensor at each access: layers are told apart
    # by their originals, not by id(layer.weight) (which Python reuses)
    net = nn.Sequential(*[wrap(nn.Linear(8, 8)) for _ in range(4)])
    assert reference_radius(net, "xavier") == pytest.approx(math.sqrt(4 * 64 * 2 / 16))
    assert len(layer_reference_radii(net, "xavier")) == 4


def test_init_scaler_and_per_layer_rescaling_agree_with_reference_radius():
    from goldisk import InitScaler

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 200), nn.BatchNorm1d(200), nn.ReLU(),
                        nn.Linear(200, 10)).double()
    ref = reference_radius(net, "xavier")
    assert InitScaler().reference_radius(net) == ref
    InitScaler(radius=1.0).apply_(net, generator=0)
    assert radius(net) == pytest.approx(ref, rel=1e-12)
    # a fresh draw puts weights at their reference and the scales at 1: the global factor
    # is close to 1 (it was 0.66 when the scales were left out of the reference)
    for i in (0, 3):
        w = float(net[i].weight.norm())
        assert w / layer_reference_radii(net, "xavier")[str(i)] == pytest.approx(1, abs=0.03)
    rescale_(net, ref, mode="per_layer")  # each layer exactly on its own shell
    for name, r in layer_reference_radii(net, "xavier").items():
        layer = net.get_submodule(name)
        assert math.sqrt(sum(float(p.pow(2).sum()) for p in layer.parameters())) == \
            pytest.approx(r, rel=1e-12)


def test_init_scaler_leaves_frozen_layers_alone():
    from goldisk import InitScaler

    torch.manual_seed(0)
    for scaler in (InitScaler(), InitScaler(reference="current", mode="per_layer", radius=2),
                   InitScaler(mode="per_layer", radius=3, init="he")):
        net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).double()
        net[0].requires_grad_(False)
        frozen = [p.detach().clone() for p in net[0].parameters()]
        scaler.apply_(net, generator=1)
        assert all(torch.equal(a, b) for a, b in zip(frozen, net[0].parameters(), strict=True))
        assert not torch.equal(net[2].weight, torch.zeros_like(net[2].weight))


def test_weights_only_leaves_out_normalization_parameters_of_any_shape():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.LayerNorm([4, 6, 6]), nn.Flatten(),
                        nn.Linear(144, 3))
    names = [n for n, _ in trainable_parameters(net, weights_only=True)]
    assert names == ["0.weight", "3.weight"]
    # only normalization scales trainable: the reference counts them at 1
    net[0].requires_grad_(False)
    net[3].requires_grad_(False)
    assert reference_radius(net) == pytest.approx(math.sqrt(144), rel=1e-14)


class Attention(nn.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, dropout=dropout, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = self.inp(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.out(a.mean(1))


@pytest.mark.parametrize("method", ["reverse", "forward"])
def test_attention_hessian_matches_brute_force_and_its_dropout_is_turned_off(method):
    # the fused attention kernels have no double backward: the engine uses the math one
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    net = Attention(dropout=0.5).double().eval()
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(12, 3, 4, generator=g, dtype=F64), torch.randint(0, 3, (12,), generator=g)
    f, w0, _ = flat_problem(net, X, y)
    with sdpa_kernel([SDPBackend.MATH]):
        H = torch.autograd.functional.hessian(f, w0)
    torch.testing.assert_close(subspace_hessian(net, X, y, None, method=method).H, H,
                               rtol=1e-10, atol=1e-13)
    net.train()  # attention dropout on: measured in eval mode after a warning
    with pytest.warns(UserWarning, match="'attn'"):
        res = subspace_hessian(net, X, y, None, method=method)
    torch.testing.assert_close(res.H, H, rtol=1e-10, atol=1e-13)


def _split(w, names, shapes) -> dict:
    """``w`` cut into the named tensors by hand (no ``functional_call``)."""
    out, i = {}, 0
    for n, s in zip(names, shapes, strict=True):
        out[n], i = w[i : i + math.prod(s)].reshape(s), i + math.prod(s)
    return out


class TwiceAndTied(nn.Module):
    """``mid`` is used twice (``mid2`` is the same module) and ``extra`` reuses its weight:
    torch's ``functional_call(tie_weights=True)`` restored this tie wrongly (torch 2.14)."""

    def __init__(self):
        super().__init__()
        self.inp, self.mid, self.out = nn.Linear(6, 4), nn.Linear(4, 4), nn.Linear(4, 3)
        self.mid2 = self.mid
        self.extra = nn.Linear(4, 4, bias=False)
        self.extra.weight = self.mid.weight

    def forward(self, x):
        a = torch.tanh(self.mid(torch.tanh(self.inp(x))))
        return self.out(torch.tanh(self.extra(torch.tanh(self.mid2(a)))))


@pytest.mark.parametrize("method", ["reverse", "forward"])
def test_a_module_used_twice_with_a_weight_tied_elsewhere(method):
    torch.manual_seed(0)
    net = TwiceAndTied().double()
    X, y = data()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["inp.weight", "inp.bias", "mid.weight", "mid.bias", "out.weight",
                     "out.bias"]
    shapes = [p.shape for p in net.parameters()]
    w0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss(w):  # the network written out by hand, independent of functional_call
        p = _split(w, names, shapes)
        W, b = p["mid.weight"], p["mid.bias"]
        a = torch.tanh(torch.tanh(X @ p["inp.weight"].T + p["inp.bias"]) @ W.T + b)
        a = torch.tanh(torch.tanh(a @ W.T + b) @ W.T)
        return F.cross_entropy(a @ p["out.weight"].T + p["out.bias"], y)

    P = make_projection("dense", w0.numel(), 5, random_state=0)
    M = P.to_dense()
    H_ref = M.T @ torch.autograd.functional.hessian(loss, w0) @ M
    res = subspace_hessian(net, X, y, P, method=method)
    torch.testing.assert_close(res.H, H_ref, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(res.loss, loss(w0), rtol=1e-13, atol=0)
    # the caller's module is only read: the tie and the parameter count are intact
    assert net.extra.weight is net.mid.weight and net.mid2 is net.mid
    assert len(list(net.parameters())) == 6
    H_full = torch.autograd.functional.hessian(loss, w0)
    full = subspace_hessian(net, X, y, None, method=method)
    torch.testing.assert_close(full.H, H_full, rtol=1e-10, atol=1e-13)
    est = hutchinson(net, X, y, n_probes=400, random_state=0)
    assert abs(est["trace"] - float(H_full.trace())) < 5 * est["trace_se"]
    assert net.extra.weight is net.mid.weight
    state = CurvatureProbe(dim=5, n_subspaces=1, random_state=0).measure(net, X, y)
    assert float(state["loss"].iloc[0]) == pytest.approx(float(loss(w0)), rel=1e-12)
    assert net.extra.weight is net.mid.weight and len(list(net.parameters())) == 6


class BufferAlias(nn.Module):
    """A buffer that is the same tensor as a trainable weight."""

    def __init__(self):
        super().__init__()
        self.l1, self.out = nn.Linear(6, 6), nn.Linear(6, 3)
        self.register_buffer("alias", self.l1.weight)

    def forward(self, x):
        return self.out(torch.tanh(self.l1(x)) + x @ self.alias)


@pytest.mark.parametrize("method", ["reverse", "forward"])
def test_a_buffer_that_is_a_trainable_weight_moves_with_it(method):
    torch.manual_seed(0)
    net = BufferAlias().double()
    X, y = data()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    w0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def logits(w):  # written out by hand
        p = _split(w, names, shapes)
        W = p["l1.weight"]
        h = torch.tanh(X @ W.T + p["l1.bias"]) + X @ W
        return h @ p["out.weight"].T + p["out.bias"]

    P = make_projection("dense", w0.numel(), 4, random_state=0)
    M = P.to_dense()
    H_ref = M.T @ torch.autograd.functional.hessian(
        lambda w: F.cross_entropy(logits(w), y), w0) @ M
    torch.testing.assert_close(subspace_hessian(net, X, y, P, method=method).H, H_ref,
                               rtol=1e-10, atol=1e-13)
    assert net.alias is net.l1.weight
    sub = SubspaceModule(net, P)
    theta = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=F64)
    with torch.no_grad():
        sub.theta.copy_(theta)
    torch.testing.assert_close(sub(X), logits(w0 + M @ theta), rtol=1e-13, atol=1e-13)
    m = sub.materialize()
    assert "alias" in m._buffers and m.alias is m.l1.weight
    torch.testing.assert_close(m(X), sub(X), rtol=0, atol=0)
