"""The layers the contraction engine (``_contract``) understands, and how a model is read as
a chain of them. Every op works on a batch ``(B, ...)``; tangents carry all directions as
``(B, d, ...)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

__all__ = ["ACTIVATIONS", "Unsupported", "chain_ops"]


class Unsupported(ValueError):
    """The model or the projection is outside the contraction engine's scope."""


def _relu(h, _m):
    return torch.relu(h), (h > 0).to(h.dtype), None


def _leaky(h, m):
    one = torch.ones((), dtype=h.dtype, device=h.device)
    slope = torch.where(h > 0, one, one * m.negative_slope)
    return h * slope, slope, None


def _tanh(h, _m):
    t = torch.tanh(h)
    d1 = 1 - t * t
    return t, d1, -2 * t * d1


def _sigmoid(h, _m):
    s = torch.sigmoid(h)
    d1 = s * (1 - s)
    return s, d1, d1 * (1 - 2 * s)


def _identity(h, _m):
    return h, None, None


#: Elementwise activations: value, first and second derivative (``None``: 1 or 0).
ACTIVATIONS = {nn.ReLU: _relu, nn.LeakyReLU: _leaky, nn.Tanh: _tanh, nn.Sigmoid: _sigmoid,
               nn.Identity: _identity}


class Act:
    kind = "act"

    def __init__(self, m):
        self.fn, self.m = ACTIVATIONS[type(m)], m

    def forward(self, values, x):
        return self.fn(x, self.m)  # value, s', s''


class LinOp:
    """A parameter-free map that is linear per sample (flatten, reshape, average pooling)."""

    kind = "linop"

    def __init__(self, fn):
        self.fn = fn

    def forward(self, values, x):
        return self.fn(x), None, None

    def tangent(self, t, B, d):
        y = self.fn(t.reshape(B * d, *t.shape[2:]))
        return y.reshape(B, d, *y.shape[1:])

    def backward(self, a, delta):
        with torch.enable_grad():
            x = a.detach().requires_grad_()
            (dx,) = torch.autograd.grad(self.fn(x), x, delta)
        return dx


class Layer:
    """``nn.Linear`` or ``nn.Conv2d``: ``wn``, ``bn`` are the weight's and bias's names in
    the layout (``None`` when frozen or absent)."""

    kind = "layer"

    def __init__(self, m, wn, bn):
        self.m, self.wn, self.bn = m, wn, bn
        self.conv = isinstance(m, nn.Conv2d)
        if self.conv:
            self.opts = {"stride": m.stride, "padding": m.padding, "dilation": m.dilation}

    def W(self, values):
        return self.m.weight if self.wn is None else values[self.wn]

    def forward(self, values, x):
        b = self.m.bias if self.bn is None else values[self.bn]
        if self.conv:
            return F.conv2d(x, self.W(values), b, **self.opts), None, None
        if x.dim() != 2:
            raise Unsupported("an nn.Linear layer gets an input that is not (N, features); "
                              "flatten it first")
        return F.linear(x, self.W(values), b), None, None

    def _apply(self, x, W):
        return F.conv2d(x, W, None, **self.opts) if self.conv else x @ W.T

    def tangent(self, values, rows, a, t, B, d):
        """``V_k a + c_k + W da_k`` for all directions: (B, d, out...)."""
        new = None
        W = self.W(values)
        V = rows.get(self.wn)
        if V is not None and not torch.is_tensor(V):  # a SparseBlock (linear layers only)
            new = (V.tangent @ a.T).view(d, W.shape[0], B).permute(2, 0, 1).contiguous()
        elif V is not None:
            new = self._apply(a, V.view(d * W.shape[0], *W.shape[1:]))
            new = new.view(B, d, W.shape[0], *new.shape[2:])
        if t is not None:
            tw = self._apply(t.reshape(B * d, *t.shape[2:]), W)
            tw = tw.view(B, d, *tw.shape[1:])
            new = tw if new is None else new.add_(tw)
        if self.bn is not None:
            c = rows[self.bn].view(1, d, -1, *([1] * (W.dim() - 2)))
            new = c.expand(B, *c.shape[1:]).clone() if new is None else new.add_(c)
        return new

    def backward(self, values, a, delta):
        if self.conv:
            return conv2d_input(a.shape, self.W(values), delta, **self.opts)
        return delta @ self.W(values)

    def cterm(self, t, delta, B, d):
        """``C = sum_n delta_n da_{k,n}^T`` for all k, as (out, d * in)."""
        if self.conv:
            W = self.m.weight
            t = t.reshape(B, -1, *t.shape[3:])
            C = conv2d_weight(t, (W.shape[0], t.shape[1], *W.shape[2:]), delta, **self.opts)
            return C.reshape(W.shape[0], -1)
        return delta.T @ t.reshape(B, -1)

    def grads(self, a, delta):
        """The batch's gradient of the weight (flat) and of the bias."""
        if self.conv:
            gw = conv2d_weight(a, self.m.weight.shape, delta, **self.opts)
            return gw.reshape(-1), delta.sum((0, 2, 3))
        return (delta.T @ a).reshape(-1), delta.sum(0)


def _flatten(x):
    return x.reshape(x.shape[0], -1)


def _modules(net: nn.Module) -> list:
    """The chain of ops ``net`` applies, as modules and callables, or raise."""
    from ..models import MLP, LeNet5, SmallCNN, as_image  # models import no curvature

    fwd = type(net).forward
    if fwd is MLP.forward:  # x.reshape(N, -1), then the Sequential
        return [_flatten, *_modules(net.net)]
    if fwd in (LeNet5.forward, SmallCNN.forward):
        c, s = net.in_channels, net.image_size
        return [lambda x: as_image(x, c, s), *_modules(net.features), _flatten,
                *_modules(net.classifier)]
    if type(net) in (nn.Linear, nn.Conv2d) or type(net) in ACTIVATIONS:
        return [net]
    if fwd is not nn.Sequential.forward:
        raise Unsupported(f"{type(net).__name__} is not an nn.Sequential chain or a goldisk "
                          "model (its forward may do anything)")
    out = []
    for m in net:
        if m._forward_hooks or m._forward_pre_hooks:
            raise Unsupported(f"module {type(m).__name__} has forward hooks")
        if getattr(m, "parametrizations", None):
            raise Unsupported(f"{type(m).__name__} has a parametrization")
        if isinstance(m, nn.Sequential) or type(m).forward in (MLP.forward, LeNet5.forward,
                                                                 SmallCNN.forward):
            out += _modules(m)
        elif type(m) is nn.Conv2d and (m.groups != 1 or m.padding_mode != "zeros"
                                       or isinstance(m.padding, str)):
            raise Unsupported("nn.Conv2d with groups, a padding mode or string padding")
        elif type(m) in ACTIVATIONS or type(m) in (nn.Linear, nn.Conv2d):
            out.append(m)
        elif type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1:
            out.append(_flatten)
        elif type(m) is nn.AvgPool2d:
            out.append(lambda x, m=m: m(x))
        else:
            raise Unsupported(f"layer {type(m).__name__} is not supported (nn.Linear, "
                              "nn.Conv2d, nn.AvgPool2d, nn.Flatten and "
                              f"{', '.join(a.__name__ for a in ACTIVATIONS)})")
    return out


def chain_ops(net, layout) -> list:
    """``net`` as a list of :class:`Layer`, :class:`Act` and :class:`LinOp`."""
    names = {id(p): n for n, p in net.named_parameters()}
    wanted = set(layout.names)

    def name(t):
        n = names.get(id(t)) if t is not None else None
        return n if n in wanted else None

    ops = []
    for m in _modules(net):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            ops.append(Layer(m, name(m.weight), name(m.bias)))
        elif isinstance(m, nn.Module):
            ops.append(Act(m))
        else:
            ops.append(LinOp(m))
    if not any(op.kind == "layer" for op in ops):
        raise Unsupported("the chain has no nn.Linear or nn.Conv2d layer")
    return ops
