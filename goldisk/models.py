"""Small classifiers used to study the Goldilocks zone; every model returns logits.

All models are plain :class:`torch.nn.Module` objects with PyTorch's default
initialization (goldisk rescales weights elsewhere).  Each has two attributes:

``depth``
    the number of Linear and Conv layers, i.e. of parameterized maps composed.
``homogeneous``
    ``True`` iff the network is positively homogeneous in its parameters:
    ``f(alpha * w) = alpha**depth * f(w)`` for every ``alpha > 0``, which holds for
    bias-free ReLU networks (ReLU and average pooling commute with positive scaling).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from goldisk._rng import torch_generator

from ._flat import frozen, tensor_sources
from ._names import MODEL_NAMES
from ._names import REFERENCES as _SCHEMES
from ._validation import is_int

__all__ = [
    "MLP", "LeNet300100", "LeNet5", "SmallCNN", "make_model", "init_weights_", "MODEL_NAMES",
    "IMAGE_SHAPES", "as_image",
]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _check_sizes(**sizes) -> None:
    """Every size (an int or a tuple of ints) must be an int >= 1."""
    for name, value in sizes.items():
        values = value if isinstance(value, tuple | list) else (value,)
        for v in values:
            if not is_int(v) or v < 1:
                raise ValueError(f"{name} must be int(s) >= 1, got {name}={value!r}.")


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}.")
    return _ACTIVATIONS[name]()


class _Base(nn.Module):
    activation: str
    use_bias: bool  # not `bias`: modules conventionally use .bias for a tensor or None

    @property
    def depth(self) -> int:
        """Number of Linear and Conv layers."""
        return sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in self.modules())

    @property
    def homogeneous(self) -> bool:
        """Whether ``f(alpha w) = alpha**depth f(w)`` for all ``alpha > 0``.

        True iff ``activation == "relu"`` and ``bias is False``: each of the ``depth``
        layers is linear in its weight and ReLU/average pooling are positively
        homogeneous of degree 1, so scaling every parameter by ``alpha`` scales the
        logits by ``alpha**depth``.
        """
        return self.activation == "relu" and not self.use_bias


class MLP(_Base):
    """Fully connected network ``in_features -> hidden... -> out_features``.

    Parameters
    ----------
    in_features : int
        Input size; inputs of any shape ``(N, ...)`` are flattened to ``(N, in_features)``.
    hidden : tuple of int or int, default (100, 100)
        Hidden widths; an int is one hidden layer; ``()`` gives a linear
        (softmax-regression) model.
    out_features : int, default 10
        Number of logits.
    activation : {"relu", "tanh"}, default "relu"
    bias : bool, default True

    Examples
    --------
    >>> net = MLP(64, hidden=(32,), out_features=10, bias=False)
    >>> net(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    >>> net.depth, net.homogeneous
    (2, True)
    """

    def __init__(self, in_features, hidden=(100, 100), out_features=10, activation="relu",
                 bias=True):
        super().__init__()
        _activation(activation)
        if is_int(hidden):
            hidden = (hidden,)  # one hidden layer, as scikit-learn's hidden_layer_sizes=100
        _check_sizes(in_features=in_features, hidden=tuple(hidden), out_features=out_features)
        if not isinstance(bias, bool | np.bool_):
            raise TypeError(f"bias must be True or False, got bias={bias!r}.")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation, self.use_bias = activation, bias
        sizes = (self.in_features, *self.hidden, self.out_features)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b, bias=bias))
            if i < len(sizes) - 2:
                layers.append(_activation(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1))


class LeNet300100(MLP):
    """The 784-300-100-10 LeNet-300-100 MLP (bias-free by default, hence homogeneous).

    Examples
    --------
    >>> LeNet300100()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_features=784, out_features=10, bias=False, activation="relu"):
        super().__init__(in_features, (300, 100), out_features, activation=activation, bias=bias)


def as_image(x: torch.Tensor, c: int, s: int) -> torch.Tensor:
    return x.reshape(x.shape[0], c, s, s) if x.dim() == 2 else x


class LeNet5(_Base):
    """LeNet-5 with average pooling: conv6-pool-conv16-pool-fc120-fc84-fc.

    ``image_size=28`` pads the first 5x5 conv by 2 (MNIST); ``32`` uses no padding
    (CIFAR-10).  Average pooling keeps the bias-free ReLU net homogeneous of degree 5.
    Flat inputs ``(N, in_channels * image_size**2)`` are reshaped.

    Examples
    --------
    >>> net = LeNet5(in_channels=3, image_size=32)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> net.depth, net.homogeneous
    (5, True)
    """

    def __init__(self, in_channels=1, out_features=10, image_size=28, bias=False,
                 activation="relu"):
        super().__init__()
        if image_size not in (28, 32):
            raise ValueError(f"image_size must be 28 or 32 for LeNet5, got {image_size!r}; use "
                             "SmallCNN (model 'cnn') for other image sizes.")
        _activation(activation)
        _check_sizes(in_channels=in_channels, out_features=out_features)
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.out_features, self.activation, self.use_bias = int(out_features), activation, bias
        pad = 2 if image_size == 28 else 0
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad, bias=bias), _activation(activation),
            nn.AvgPool2d(2), nn.Conv2d(6, 16, 5, bias=bias), _activation(activation),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120, bias=bias), _activation(activation),
            nn.Linear(120, 84, bias=bias), _activation(activation),
            nn.Linear(84, out_features, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(as_image(x, self.in_channels, self.image_size))
        return self.classifier(x.reshape(x.shape[0], -1))


class SmallCNN(_Base):
    """A few 3x3 conv layers (padding 1), each followed by the activation and, while the
    spatial size is at least 2, ``AvgPool2d(2)``; then one Linear layer to the logits.

    Works on 8x8 digits images as well as 28x28 and 32x32 ones; flat inputs
    ``(N, in_channels * image_size**2)`` are reshaped.

    Examples
    --------
    >>> net = SmallCNN(image_size=8)
    >>> net(torch.zeros(3, 64)).shape
    torch.Size([3, 10])
    >>> net.depth, net.homogeneous
    (3, False)
    """

    def __init__(self, in_channels=1, out_features=10, image_size=28, channels=(16, 32),
                 bias=True, activation="relu"):
        super().__init__()
        _activation(activation)
        _check_sizes(in_channels=in_channels, image_size=image_size, channels=tuple(channels),
                     out_features=out_features)
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.channels = tuple(int(c) for c in channels)
        self.out_features, self.activation, self.use_bias = int(out_features), activation, bias
        layers, c, s = [], self.in_channels, self.image_size
        for c_out in self.channels:
            layers += [nn.Conv2d(c, c_out, 3, padding=1, bias=bias), _activation(activation)]
            if s >= 2:
                layers.append(nn.AvgPool2d(2))
                s //= 2
            c = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c * s * s, self.out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(as_image(x, self.in_channels, self.image_size))
        return self.classifier(x.reshape(x.shape[0], -1))


#: in_features -> (channels, image size) of the image data sets (digits, MNIST, CIFAR-10).
IMAGE_SHAPES = {64: (1, 8), 784: (1, 28), 3072: (3, 32)}


def _image_kwargs(in_features: int, kwargs: dict) -> dict:
    c, s = IMAGE_SHAPES.get(in_features, (None, None))
    c, s = kwargs.get("in_channels", c), kwargs.get("image_size", s)
    if c is None or s is None:
        raise ValueError(
            f"cannot infer the image shape from in_features={in_features}; known sizes are "
            "64 (1x8x8), 784 (1x28x28) and 3072 (3x32x32). Pass in_channels= and image_size=."
        )
    if c * s * s != in_features:
        raise ValueError(f"in_features={in_features} != in_channels*image_size**2 = {c * s * s}.")
    return {**kwargs, "in_channels": c, "image_size": s}


def make_model(name: str, in_features: int, n_classes: int, **kwargs) -> nn.Module:
    """Build a model by name: "mlp", "linear", "lenet300100", "lenet5" or "cnn".

    Parameters
    ----------
    name : str
        Case-insensitive; ``-`` and ``_`` are ignored (``"lenet-300-100"`` works).
    in_features : int
        Flattened input size.  CNNs infer ``(in_channels, image_size)`` from it:
        64 -> 1x8x8, 784 -> 1x28x28, 3072 -> 3x32x32 (override with keyword arguments).
    n_classes : int
        Number of logits.
    **kwargs
        Passed to the model constructor.

    Examples
    --------
    >>> make_model("cnn", 64, 10)(torch.zeros(4, 64)).shape
    torch.Size([4, 10])
    >>> make_model("linear", 2, 3).depth
    1
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    in_features = int(in_features)
    if key in ("mlp", "linear"):
        kwargs = {**kwargs, "hidden": ()} if key == "linear" else kwargs
        return MLP(in_features, out_features=n_classes, **kwargs)
    if key == "lenet300100":
        return LeNet300100(in_features, n_classes, **kwargs)
    if key in ("lenet5", "cnn"):
        cls = LeNet5 if key == "lenet5" else SmallCNN
        return cls(out_features=n_classes, **_image_kwargs(in_features, kwargs))
    raise ValueError(f"unknown model name {name!r}; valid names are {', '.join(MODEL_NAMES)}.")


def _fill(t: torch.Tensor, gen, draw) -> None:
    """Fill ``t`` in place by ``draw(tensor, generator)``, drawing on the generator's device."""
    tmp = t if gen is None or gen.device == t.device else t.new_empty(t.shape, device=gen.device)
    draw(tmp, gen)
    if tmp is not t:
        t.copy_(tmp)


@torch.no_grad()
def init_weights_(module: nn.Module, scheme: str = "xavier", generator=None,
                  zero_bias: bool = True) -> nn.Module:
    """Re-initialize every Linear/Conv layer of ``module`` in place; returns ``module``.

    Frozen tensors (``requires_grad=False``) are left as they are; a parametrized weight
    (spectral norm, orthogonal) is initialized through its original tensor.

    Weights are Gaussian with standard deviation ``sigma``:
    ``sigma**2 = 2 / (fan_in + fan_out)`` ("xavier"), ``2 / fan_in`` ("he"),
    ``1 / fan_in`` ("lecun"), where for a conv layer ``fan_in = in_channels * kh * kw``
    and ``fan_out = out_channels * kh * kw`` (PyTorch's convention, per group).
    ``"default"`` instead draws PyTorch's own default, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
    for weights *and* biases (``zero_bias`` is ignored for it); the other schemes zero the
    biases when ``zero_bias`` is true and leave them untouched otherwise.

    Parameters
    ----------
    module : torch.nn.Module
    scheme : {"xavier", "he", "lecun", "default"}
    generator : torch.Generator or int, optional
        Source of randomness (an int seeds a fresh CPU generator).  ``None`` uses the
        global torch RNG.  The same seed gives identical weights.
    zero_bias : bool, default True

    Examples
    --------
    >>> a = init_weights_(MLP(4, (3,)), "he", generator=torch.Generator().manual_seed(0))
    >>> b = init_weights_(MLP(4, (3,)), "he", generator=torch.Generator().manual_seed(0))
    >>> torch.equal(a.net[0].weight, b.net[0].weight), a.net[0].bias.count_nonzero().item()
    (True, 0)
    """
    if scheme not in _SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; valid schemes are {', '.join(_SCHEMES)}")
    gen = None if generator is None else torch_generator(generator)
    for m in module.modules():
        if not isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            continue
        w, bias = _storage(m, "weight"), _storage(m, "bias")
        shape = m.weight.shape
        receptive = math.prod(shape[2:])
        fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
        if scheme == "default":
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            for t in (w, bias):
                if t is not None:
                    _fill(t, gen, lambda x, g, b=bound: x.uniform_(-b, b, generator=g))
            continue
        var = {"xavier": 2.0 / (fan_in + fan_out), "he": 2.0 / fan_in, "lecun": 1.0 / fan_in}
        std = math.sqrt(var[scheme])
        if w is not None:
            _fill(w, gen, lambda x, g, s=std: nn.init.normal_(x, 0.0, s, generator=g))
        if zero_bias and bias is not None:
            bias.zero_()
    return module


def _storage(layer: nn.Module, name: str):
    """The tensor to fill for ``layer.<name>``: the parameter itself, or the original of a
    one-tensor parametrization of the same shape (spectral norm, orthogonal); None when
    there is none, or it is frozen (``requires_grad=False``: a constant, left as it is)."""
    sources = tensor_sources(layer, name)
    if len(sources) != 1 or frozen(sources) or sources[0].shape != getattr(layer, name).shape:
        return None
    return sources[0]
