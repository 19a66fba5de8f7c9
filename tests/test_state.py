"""Model-state quantities (goldisk/curvature/_state.py) against direct torch computations."""

import math

import pytest
import torch

from goldisk.curvature import model_state


def test_model_state_against_manual():
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    X = torch.randn(50, 4, generator=gen)
    y = torch.randint(0, 3, (50,), generator=gen)
    s = model_state(net, X, y, batch_size=16)
    z = net.double()(X.double()).detach()
    p = torch.softmax(z, -1)
    onehot = torch.nn.functional.one_hot(y, 3).double()
    assert s["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(z, y)), rel=1e-12)
    assert s["accuracy"] == pytest.approx(float((z.argmax(1) == y).double().mean()))
    assert s["confidence"] == pytest.approx(float(p.max(1).values.mean()), rel=1e-12)
    assert s["entropy"] == pytest.approx(float(-(p * p.log()).sum(1).mean()), rel=1e-12)
    assert s["logit_grad_norm"] == pytest.approx(float((p - onehot).norm(dim=1).mean()), rel=1e-12)
    assert s["zero_logit_frac"] == pytest.approx(float((z == 0).double().mean()))


def test_model_state_saturated_logits_are_finite():
    net = torch.nn.Linear(2, 3)
    with torch.no_grad():
        net.weight.mul_(1e6)
    s = model_state(net, torch.randn(20, 2), torch.arange(20) % 3)
    assert all(math.isfinite(v) for v in s.values())
