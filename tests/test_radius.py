"""Radius, reference radii, rescaling and the temperature wrapper."""

import math

import pytest
import torch

from goldisk import SoftmaxTemperature, layer_reference_radii, radius, reference_radius, rescale_
from goldisk._flat import parameter_vector
from goldisk.models import MLP, init_weights_


@pytest.mark.parametrize("scheme", ["xavier", "he", "lecun", "default"])
def test_reference_radius_matches_sampled_init(scheme):
    net = MLP(784, (200, 200), 10)
    sampled = []
    for seed in range(3):
        init_weights_(net, scheme, generator=torch.Generator().manual_seed(seed))
        sampled.append(radius(net))
    ref = reference_radius(net, scheme)
    assert all(abs(r / ref - 1) < 0.01 for r in sampled)


def test_reference_radius_closed_form():
    net = MLP(30, (20,), 5)
    xavier = math.sqrt(30 * 20 * 2 / 50 + 20 * 5 * 2 / 25)
    assert reference_radius(net, "xavier") == pytest.approx(xavier, rel=1e-12)
    he = layer_reference_radii(net, "he")
    assert sorted(he.values()) == pytest.approx(sorted([math.sqrt(20 * 2), math.sqrt(5 * 2)]))
    with pytest.raises(ValueError, match="reference"):
        reference_radius(net, "glorot-ish")
    with pytest.raises(ValueError, match="no trainable Linear or Conv"):
        reference_radius(torch.nn.ReLU())


def test_reference_radius_closed_forms_for_every_scheme_with_a_conv_layer():
    # fan_in/fan_out of a convolution include the kernel size; PyTorch's default init
    # (uniform, bound 1/sqrt(fan_in)) has variance 1/(3 fan_in) for weights and biases
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, kernel_size=(3, 5)), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(24, 6))
    conv_w, conv_b, conv_in, conv_out = 4 * 3 * 3 * 5, 4, 3 * 3 * 5, 4 * 3 * 5
    lin_w, lin_b, lin_in, lin_out = 24 * 6, 6, 24, 6
    expected = {
        "xavier": conv_w * 2 / (conv_in + conv_out) + lin_w * 2 / (lin_in + lin_out),
        "he": conv_w * 2 / conv_in + lin_w * 2 / lin_in,
        "lecun": conv_w / conv_in + lin_w / lin_in,
        "default": (conv_w + conv_b) / (3 * conv_in) + (lin_w + lin_b) / (3 * lin_in),
    }
    for scheme, sq in expected.items():
        assert reference_radius(net, scheme) == pytest.approx(math.sqrt(sq), rel=1e-12), scheme


def test_weights_only_rescale_leaves_biases_alone():
    net = MLP(10, (8,), 3)
    biases = {n: p.detach().clone() for n, p in net.named_parameters() if n.endswith("bias")}
    weights = torch.cat([p.detach().reshape(-1) for n, p in net.named_parameters()
                         if n.endswith("weight")]).double()
    rescale_(net, 4.0, weights_only=True)
    assert radius(net, weights_only=True) == pytest.approx(4.0, rel=1e-6)
    after = torch.cat([p.detach().reshape(-1) for n, p in net.named_parameters()
                       if n.endswith("weight")]).double()
    assert torch.allclose(after, weights * (4.0 / weights.norm()), rtol=1e-6, atol=1e-7)
    for n, p in net.named_parameters():
        if n.endswith("bias"):
            assert torch.equal(p, biases[n]), n


def test_weights_only_radius_excludes_biases():
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.fill_(1.0)
        net.bias.fill_(10.0)
    assert radius(net, weights_only=True) == pytest.approx(math.sqrt(6))
    assert radius(net) == pytest.approx(math.sqrt(6 + 200))


def test_global_rescale_keeps_direction():
    net = MLP(10, (8,), 3)
    before = parameter_vector(net).double()
    rescale_(net, 7.0)
    after = parameter_vector(net).double()
    assert after.norm() == pytest.approx(7.0, rel=1e-6)
    assert torch.allclose(after / after.norm(), before / before.norm(), atol=1e-6)


def test_per_layer_rescale_puts_each_layer_on_its_shell():
    net = MLP(50, (40, 30), 10)
    rescale_(net, 3.0, mode="per_layer", reference="he")
    refs = layer_reference_radii(net, "he")
    total = math.sqrt(sum(r * r for r in refs.values()))
    layers = dict(net.named_modules())
    for name, ref in refs.items():
        r = math.sqrt(sum(float(p.double().pow(2).sum()) for p in layers[name].parameters()))
        assert r == pytest.approx(3.0 * ref / total, rel=1e-6)
    assert radius(net) == pytest.approx(3.0, rel=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_rescale_rejects_bad_targets(bad):
    with pytest.raises(ValueError, match="target radius"):
        rescale_(torch.nn.Linear(2, 2), bad)


def test_rescale_rejects_zero_module_and_bad_mode():
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="mode"):
        rescale_(net, 1.0, mode="sideways")
    torch.nn.init.zeros_(net.weight), torch.nn.init.zeros_(net.bias)
    with pytest.raises(ValueError, match="radius is 0"):
        rescale_(net, 1.0)


def test_temperature_equals_homogeneous_rescaling():
    """Bias-free ReLU net of depth L: f(alpha w) = alpha^L f(w), i.e. temperature alpha^-L."""
    net = MLP(6, (5, 4), 3, bias=False).double()
    x = torch.randn(7, 6, dtype=torch.float64)
    alpha = 2.5
    scaled = MLP(6, (5, 4), 3, bias=False).double()
    scaled.load_state_dict(net.state_dict())
    rescale_(scaled, alpha * radius(net))
    hot = SoftmaxTemperature(net, temperature=alpha ** -3)
    assert torch.allclose(hot(x), scaled(x), rtol=1e-10)
    with pytest.raises(ValueError, match="temperature"):
        SoftmaxTemperature(net, temperature=0)
