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


def brute_force_hessian(net, X, y, loss="cross_entropy"):
    """Full D x D Hessian of the mean loss by torch.autograd.functional.hessian, float64."""
    from goldisk._flat import ParamLayout, parameter_vector
    from goldisk.curvature import per_sample_loss

    layout = ParamLayout(net)
    w0 = parameter_vector(net).double()

    def f(w):
        return per_sample_loss(layout.call(net, w, X), y, loss).mean()

    return torch.autograd.functional.hessian(f, w0)


def brute_force_gauss_newton(net, X, y, loss="cross_entropy"):
    """G = J^T (d^2 l / dz^2) J / N with the full Jacobian J built explicitly."""
    from goldisk._flat import ParamLayout, parameter_vector
    from goldisk.curvature import logit_hessian

    layout = ParamLayout(net)
    w0 = parameter_vector(net).double()
    J = torch.autograd.functional.jacobian(lambda w: layout.call(net, w, X), w0)  # (N, C, D)
    z = layout.call(net, w0, X).detach()
    A = logit_hessian(z, y, loss)
    return torch.einsum("ncd,nce,nef->df", J, A, J) / len(X)
