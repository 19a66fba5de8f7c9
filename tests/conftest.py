"""Shared fixtures and brute-force references for the goldisk test-suite."""

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def tiny_problem(seed=0, n=40, in_features=5, hidden=(7,), classes=3, bias=True, act="tanh"):
    """A small MLP and classification data, all float64, seeded."""
    gen = torch.Generator().manual_seed(seed)
    layers, prev = [], in_features
    for h in hidden:
        layers += [torch.nn.Linear(prev, h, bias=bias), torch.nn.Tanh() if act == "tanh"
                   else torch.nn.ReLU()]
        prev = h
    layers.append(torch.nn.Linear(prev, classes, bias=bias))
    net = torch.nn.Sequential(*layers).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.7)
    X = torch.randn(n, in_features, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=gen)
    return net, X, y


def reference_loss(z, y, loss="cross_entropy"):
    """Per-sample loss from torch's own functions (independent of goldisk's losses)."""
    F = torch.nn.functional
    if loss == "cross_entropy":
        return F.cross_entropy(z, y.long(), reduction="none")
    return F.mse_loss(z, y.to(z.dtype).reshape(z.shape), reduction="none").mean(-1)


def reference_logit_gradient(z, y, loss="cross_entropy"):
    """``d loss_n / d z_n`` by autograd through :func:`reference_loss`, (N, C)."""
    z = z.detach().requires_grad_()
    return torch.autograd.grad(reference_loss(z, y, loss).sum(), z)[0]


def reference_logit_hessian(z, y, loss="cross_entropy"):
    """``d^2 loss_n / d z_n^2`` by autograd through :func:`reference_loss`, (N, C, C)."""
    return torch.stack([
        torch.autograd.functional.hessian(
            lambda zn, n=n: reference_loss(zn[None], y[n : n + 1], loss).sum(), z[n].detach())
        for n in range(len(z))
    ])


def brute_force_hessian(net, X, y, loss="cross_entropy"):
    """Full D x D Hessian of the mean loss by torch.autograd.functional.hessian, float64."""
    from goldisk._flat import ParamLayout, parameter_vector

    layout = ParamLayout(net)
    w0 = parameter_vector(net).double()

    def f(w):
        return reference_loss(layout.call(net, w, X), y, loss).mean()

    return torch.autograd.functional.hessian(f, w0)


def brute_force_gauss_newton(net, X, y, loss="cross_entropy"):
    """G = J^T (d^2 l / dz^2) J / N with the full Jacobian J built explicitly."""
    from goldisk._flat import ParamLayout, parameter_vector

    layout = ParamLayout(net)
    w0 = parameter_vector(net).double()
    J = torch.autograd.functional.jacobian(lambda w: layout.call(net, w, X), w0)  # (N, C, D)
    z = layout.call(net, w0, X).detach()
    A = reference_logit_hessian(z, y, loss)
    return torch.einsum("ncd,nce,nef->df", J, A, J) / len(X)


def digits_subset():
    """The first 200 of scikit-learn's digits, pixels in [0, 1] (the probe and selector
    tests' data)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:200] / 16.0, y[:200]


def small_net(**kw):
    """A small digits classifier, one epoch unless told otherwise."""
    from goldisk import GoldilocksClassifier
    from goldisk.models import MLP

    params = dict(module__hidden=(8,), max_epochs=1, lr=1e-2, random_state=0)
    params.update(kw)
    return GoldilocksClassifier(MLP, **params)
