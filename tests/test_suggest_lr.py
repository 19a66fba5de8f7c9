"""suggest_lr (goldisk/curvature/_suggest_lr.py) against brute-force eigenvalues, gradient
descent below and above it on digits, and the estimators' lr="auto"."""

import copy

import numpy as np
import pytest
import torch

from goldisk.curvature import suggest_lr
from goldisk.curvature._losses import per_sample_loss
from goldisk.curvature._suggest_lr import adam_preconditioner
from goldisk.models import MLP


def brute_hessian(net, X, y):
    """The full Hessian of the mean cross-entropy, column by column (float64)."""
    net = copy.deepcopy(net).double()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    w0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def f(w):
        parts, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            parts[n] = w[i : i + s.numel()].reshape(s)
            i += s.numel()
        return per_sample_loss(torch.func.functional_call(net, parts, (X,)), y).mean()

    return torch.autograd.functional.hessian(f, w0).numpy()


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(30, 3, generator=g, dtype=torch.float64)
    return MLP(3, (5,), 3).double(), X, torch.arange(30) % 3


def test_suggest_lr_sgd_is_two_over_brute_force_lambda_max(tiny):
    net, X, y = tiny
    lam = np.linalg.eigvalsh(brute_hessian(net, X, y))[-1]
    s = suggest_lr(net, X, y, random_state=0)
    assert s.lambda_max == pytest.approx(lam, rel=1e-7)
    assert s.lr == pytest.approx(2 / lam, rel=1e-7)
    m = suggest_lr(net, X, y, momentum=0.5, random_state=0)
    assert m.lr == pytest.approx(3 / lam, rel=1e-7)  # (2 + 2 beta) / lambda_max


def test_suggest_lr_adam_is_preconditioned_sharpness(tiny):
    net, X, y = tiny
    H = brute_hessian(net, X, y)
    # Adam's v_hat after one full-batch step is g^2: P = |g| + eps
    P = np.concatenate([p.reshape(-1).numpy() for p in adam_preconditioner(net, X, y)])
    g = torch.autograd.grad(per_sample_loss(net(X), y).mean(), list(net.parameters()))
    assert P == pytest.approx(np.abs(torch.cat([a.reshape(-1) for a in g]).numpy()) + 1e-8,
                              rel=1e-10)
    lam = np.linalg.eigvalsh(H / np.sqrt(np.outer(P, P)))[-1]
    s = suggest_lr(net, X, y, "adam", random_state=0)
    assert s.lambda_max == pytest.approx(lam, rel=1e-6)
    assert s.threshold == pytest.approx(38.0)
    assert s.lr == pytest.approx(38.0 / lam, rel=1e-6)


def test_suggest_lr_bad_input(tiny):
    net, X, y = tiny
    with pytest.raises(ValueError, match="optimizer must be one of"):
        suggest_lr(net, X, y, "rmsprop")
    with pytest.raises(ValueError, match="momentum"):
        suggest_lr(net, X, y, momentum=1.0)
    with pytest.raises(ValueError, match="betas"):
        suggest_lr(net, X, y, "adam", betas=(1.0, 0.9))


def _gd_losses(net, X, y, lr, steps):
    net = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    out = []
    for _ in range(steps + 1):
        opt.zero_grad()
        loss = per_sample_loss(net(X), y).mean()
        out.append(float(loss.detach()))
        loss.backward()
        opt.step()
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gd_below_and_above_the_suggested_lr_on_digits(seed):
    from goldisk.datasets import load_digits
    from goldisk.experiments import point_at

    ds = load_digits()
    X, y = torch.tensor(ds.X, dtype=torch.float64), torch.tensor(ds.y)
    net = point_at(MLP(64, (32, 32), 10), "xavier", seed).double()
    lr = suggest_lr(net, X, y, random_state=0).lr
    below = _gd_losses(net, X, y, 0.8 * lr, 10)
    assert np.all(np.diff(below) < 0), below  # lower at each of the first 10 steps
    above = _gd_losses(net, X, y, 2.5 * lr, 10)
    assert np.any(np.diff(above) > 0), above  # rises within the first 10 steps


def test_lr_auto_on_classifier():
    from goldisk import GoldilocksClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)).astype(np.float32), rng.integers(0, 3, 60)
    kw = {"module__hidden": (6,), "max_epochs": 0, "random_state": 0}
    net = GoldilocksClassifier(MLP, lr="auto", optimizer=torch.optim.SGD, **kw).fit(X, y)
    ref = suggest_lr(net.module_, X, y, random_state=net.init_seeds_["train"])
    assert net.lr_ == pytest.approx(ref.lr, rel=1e-6)
    assert net.optimizer_.param_groups[0]["lr"] == net.lr_
    adam = GoldilocksClassifier(MLP, lr="auto", **kw).fit(X, y)
    assert adam.lr_suggestion_.optimizer == "adam"
    fixed = GoldilocksClassifier(MLP, lr=0.05, **kw).fit(X, y)  # a user's number wins
    assert fixed.optimizer_.param_groups[0]["lr"] == 0.05 == fixed.lr_
    assert not hasattr(fixed, "lr_suggestion_")
    with pytest.raises(TypeError, match="lr must be a real number, got 'fast'.*lr='auto'"):
        GoldilocksClassifier(MLP, lr="fast", **kw).fit(X, y)


def test_lr_auto_on_a_subspace_net_uses_the_subspace_hessian():
    from goldisk import GoldilocksClassifier
    from goldisk.estimators import SubspaceProjector

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    net = GoldilocksClassifier(MLP, module__hidden=(6,), subspace=SubspaceProjector(dim=5),
                               lr="auto", optimizer=torch.optim.SGD, max_epochs=0,
                               dtype="float64", random_state=0).fit(X, y)
    module = net.module_
    (name, theta), = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def f(t):
        return per_sample_loss(torch.func.functional_call(module, {name: t}, (Xt,)), yt).mean()

    H = torch.autograd.functional.hessian(f, theta.detach().clone()).numpy()
    assert net.lr_ == pytest.approx(2 / np.linalg.eigvalsh(H)[-1], rel=1e-6)
