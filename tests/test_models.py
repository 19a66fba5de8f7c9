import math

import pytest
import torch
from torch import nn

from goldisk.models import MLP, LeNet5, LeNet300100, SmallCNN, init_weights_, make_model


@pytest.mark.parametrize(
    "model, x",
    [
        (MLP(64), torch.randn(5, 64)),
        (MLP(64, hidden=()), torch.randn(5, 1, 8, 8)),
        (LeNet300100(), torch.randn(5, 1, 28, 28)),
        (LeNet5(), torch.randn(5, 1, 28, 28)),
        (LeNet5(), torch.randn(5, 784)),
        (LeNet5(in_channels=3, image_size=32), torch.randn(5, 3, 32, 32)),
        (SmallCNN(image_size=8), torch.randn(5, 1, 8, 8)),
        (SmallCNN(image_size=8), torch.randn(5, 64)),
        (SmallCNN(image_size=28), torch.randn(5, 1, 28, 28)),
        (SmallCNN(in_channels=3, image_size=32), torch.randn(5, 3072)),
        (SmallCNN(image_size=2, channels=(4, 4, 4)), torch.randn(5, 1, 2, 2)),
    ],
)
def test_output_shapes(model, x):
    assert model(x).shape == (5, 10)


def test_depth_and_homogeneous_flags():
    assert MLP(4, hidden=(3, 3)).depth == 3
    assert MLP(4, hidden=()).depth == 1
    assert MLP(4, bias=False).homogeneous and not MLP(4).homogeneous
    assert not MLP(4, bias=False, activation="tanh").homogeneous
    assert LeNet300100().homogeneous and LeNet300100().depth == 3
    assert LeNet5().homogeneous and LeNet5().depth == 5
    assert SmallCNN().depth == 3 and not SmallCNN().homogeneous
    assert SmallCNN(bias=False).homogeneous


def _scaled_ratio(model, x, alpha):
    model = model.double()
    with torch.no_grad():
        f = model(x)
        for p in model.parameters():
            p.mul_(alpha)
        return model(x), f


@pytest.mark.parametrize("alpha", [0.1, 3.0])
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: MLP(20, hidden=(16, 8), bias=False), (7, 20)),
        (lambda: LeNet5(bias=False), (3, 1, 28, 28)),
        (lambda: SmallCNN(image_size=8, bias=False), (3, 1, 8, 8)),
    ],
)
def test_homogeneity_holds(make, shape, alpha):
    torch.manual_seed(0)
    model = make()
    assert model.homogeneous
    x = torch.randn(shape, dtype=torch.float64)
    f_scaled, f = _scaled_ratio(model, x, alpha)
    torch.testing.assert_close(f_scaled, alpha**model.depth * f, rtol=1e-10, atol=0)


@pytest.mark.parametrize("alpha", [0.1, 3.0])
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: MLP(20, hidden=(16, 8), bias=False, activation="tanh"), (7, 20)),
        (lambda: MLP(20, hidden=(16, 8), bias=True), (7, 20)),
        (lambda: LeNet5(bias=True), (3, 1, 28, 28)),
    ],
)
def test_homogeneity_fails(make, shape, alpha):
    torch.manual_seed(0)
    model = make()
    assert not model.homogeneous
    for m in model.modules():  # make sure biases are nonzero
        if getattr(m, "bias", None) is not None:
            nn.init.uniform_(m.bias, 0.5, 1.0)
    x = torch.randn(shape, dtype=torch.float64)
    f_scaled, f = _scaled_ratio(model, x, alpha)
    assert not torch.allclose(f_scaled, alpha**model.depth * f, rtol=1e-3, atol=0)


def _sigma(scheme, fan_in, fan_out):
    return {
        "xavier": math.sqrt(2 / (fan_in + fan_out)),
        "he": math.sqrt(2 / fan_in),
        "lecun": math.sqrt(1 / fan_in),
        "default": 1 / math.sqrt(fan_in) / math.sqrt(3),  # std of U(-b, b) is b / sqrt(3)
    }[scheme]


@pytest.mark.parametrize("scheme", ["xavier", "he", "lecun", "default"])
def test_init_weights_statistics(scheme):
    lin = nn.Linear(1000, 500)
    conv = nn.Conv2d(64, 128, 3)
    model = nn.Sequential(lin, conv)
    gen = torch.Generator().manual_seed(0)
    assert init_weights_(model, scheme, generator=gen) is model
    for w, fan_in, fan_out in [(lin.weight, 1000, 500), (conv.weight, 64 * 9, 128 * 9)]:
        std = w.std().item()
        assert abs(std / _sigma(scheme, fan_in, fan_out) - 1) < 0.05
        assert abs(w.mean().item()) < 0.05 * std
    if scheme == "default":
        bound = 1 / math.sqrt(1000)
        assert lin.bias.abs().max() <= bound and lin.bias.abs().max() > 0.5 * bound
    else:
        assert torch.count_nonzero(lin.bias) == 0 and torch.count_nonzero(conv.bias) == 0


def test_init_weights_reproducible_and_bias_kept():
    def build(seed, **kw):
        return init_weights_(LeNet5(bias=True), "he", torch.Generator().manual_seed(seed), **kw)

    a, b, c = build(1), build(1), build(2)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc) or torch.count_nonzero(pa) == 0
    # an int seeds a generator; zero_bias=False leaves biases alone
    model = MLP(5, (4,))
    bias = model.net[0].bias.clone()
    init_weights_(model, "xavier", generator=3, zero_bias=False)
    assert torch.equal(model.net[0].bias, bias)
    assert torch.equal(model.net[0].weight, init_weights_(MLP(5, (4,)), "xavier", 3).net[0].weight)


def test_init_weights_does_not_touch_global_rng_with_generator():
    model = MLP(5, (4,))
    state = torch.get_rng_state()
    init_weights_(model, "lecun", generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())


def test_make_model():
    assert isinstance(make_model("mlp", 64, 10, hidden=(8,)), MLP)
    assert make_model("linear", 2, 3).depth == 1
    assert isinstance(make_model("LeNet-300-100", 784, 10), LeNet300100)
    net = make_model("lenet5", 3072, 10)
    assert net.in_channels == 3 and net.image_size == 32
    assert make_model("cnn", 64, 10)(torch.randn(2, 64)).shape == (2, 10)
    assert make_model("cnn", 784, 5)(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    assert make_model("cnn", 48, 4, in_channels=3, image_size=4)(torch.randn(2, 48)).shape == (2, 4)


def test_errors():
    with pytest.raises(ValueError, match="valid names are .*mlp"):
        make_model("resnet", 64, 10)
    with pytest.raises(ValueError, match="in_features"):
        make_model("cnn", 100, 10)
    with pytest.raises(ValueError, match="image_size"):
        make_model("lenet5", 64, 10)
    with pytest.raises(ValueError, match="valid schemes"):
        init_weights_(MLP(2), "orthogonal")
    with pytest.raises(ValueError, match="activation"):
        MLP(2, activation="gelu")
