"""Contraction engine: the exact ``d x d`` subspace Hessian layer by layer, no ``H v`` in R^D.

For a chain of ``nn.Linear`` layers and elementwise activations ending in logits ``z``
(``h_l = W_l a_{l-1} + b_l``, ``a_l = s(h_l)``, ``a_0 = x``) and directions ``v_k`` (the
columns of ``P``, with blocks ``V_k^l``, ``c_k^l`` per layer), the forward tangents are

    dh_k^l = V_k^l a_{l-1} + c_k^l + W_l da_k^{l-1},   da_k^l = s'(h_l) dh_k^l,   da^0 = 0

and ``U_k = dh_k^L = J v_k``. With ``r = dL/dz``, ``delta_l = dL/dh_l`` and
``g_l = dL/da_l`` from one primal backward pass, the second-order chain rule gives

    H_jk = sum_n U_j^T A_n U_k                              (Gauss-Newton part G)
         + sum_l <V_j^l, C_k^l> + <V_k^l, C_j^l>,  C_k^l = sum_n delta_l[n] da_k^{l-1}[n]^T
         + sum_l sum_n (g_l s''(h_l))[n] . (dh_j^l dh_k^l)[n]

(``A_n`` the logit Hessian; the weight blocks are linear in ``theta`` on a hyperplane, so
there is no other term). Everything is a matrix product over the batch with all ``d``
directions at once: the first layer (``da^0 = 0``) needs only its tangent ``V_k^1 x``,
there is no backward pass per direction, and ``C`` is accumulated over the whole dataset
before it meets ``V`` in one ``d x d`` product. ``G`` alone needs only the tangents.

Hypersphere: the directions become the columns of ``M = (I - u u^T) P`` and the sphere's
closed-form term of ``goldisk.curvature._reverse`` is added (with the gradient assembled
from ``delta`` and the activations).

Scope: ``nn.Sequential`` chains (nested ones too) and goldisk's ``MLP``/``LeNet300100`` of
``nn.Linear``, ``nn.Flatten`` and the activations in ``ACTIVATIONS``, dense projections,
softmax cross-entropy or MSE. Anything else is refused by :func:`contract_plan`, and
``method="auto"`` then uses the reverse engine.
"""

from __future__ import annotations

import torch
from torch import nn

from ._losses import logit_gradient, logit_hessian, per_sample_loss

__all__ = ["ACTIVATIONS", "Unsupported", "contract_plan", "contract_hessian"]

#: Bytes of one ``(sub-batch, d, width)`` tangent: the batch is cut into sub-batches so
#: that the widest tangent stays under glibc's mmap threshold (see ``_reverse``).
TANGENT_BYTES = 32 * 2**20


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


def _modules(net: nn.Module) -> list:
    """The chain of leaf modules ``net`` applies, or raise :class:`Unsupported`."""
    from ..models import MLP  # models import nothing from curvature

    if type(net).forward is MLP.forward:  # x.reshape(N, -1), then the Sequential
        return [nn.Flatten(), *_modules(net.net)]
    if type(net).forward is not nn.Sequential.forward:
        raise Unsupported(f"{type(net).__name__} is not an nn.Sequential chain or a goldisk "
                          "MLP (its forward may do anything)")
    out = []
    for m in net:
        if m._forward_hooks or m._forward_pre_hooks:
            raise Unsupported(f"module {type(m).__name__} has forward hooks")
        if isinstance(m, nn.Sequential) or type(m).forward is MLP.forward:
            out += _modules(m)
        elif type(m) in ACTIVATIONS or type(m) is nn.Linear:
            if getattr(m, "parametrizations", None):
                raise Unsupported(f"{type(m).__name__} has a parametrization")
            out.append(m)
        elif type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1:
            out.append(m)
        else:
            raise Unsupported(f"layer {type(m).__name__} is not supported (nn.Linear, "
                              f"nn.Flatten and {', '.join(a.__name__ for a in ACTIVATIONS)})")
    return out


class _Plan:
    """The chain as ops: ``("linear", module, weight name, bias name)`` (names in the
    layout, ``None`` when frozen or absent), ``("act", fn, module)``, ``("flatten",)``."""

    def __init__(self, net, layout):
        names = {id(p): n for n, p in net.named_parameters()}
        wanted = set(layout.names)

        def name(t):
            n = names.get(id(t)) if t is not None else None
            return n if n in wanted else None

        self.ops, self.slices = [], dict(layout.slices())
        self.shapes = dict(zip(layout.names, layout.shapes, strict=True))
        for m in _modules(net):
            if isinstance(m, nn.Linear):
                self.ops.append(("linear", m, name(m.weight), name(m.bias)))
            elif isinstance(m, nn.Flatten):
                self.ops.append(("flatten",))
            else:
                self.ops.append(("act", ACTIVATIONS[type(m)], m))
        if not any(op[0] == "linear" for op in self.ops):
            raise Unsupported("the chain has no nn.Linear layer")

    def forward(self, values, x):
        """Logits, and per op its input (``acts``) and activation derivatives."""
        acts, derivs = [], []
        for op in self.ops:
            acts.append(x)
            if op[0] == "flatten":
                x, dv = x.reshape(x.shape[0], -1), None
            elif op[0] == "linear":
                if x.dim() != 2:
                    raise Unsupported("an nn.Linear layer gets an input that is not (N, "
                                      "features); flatten it first")
                W, b = _value(values, op[1], "weight", op[2]), _value(values, op[1], "bias", op[3])
                x, dv = torch.nn.functional.linear(x, W, b), None
            else:
                x, d1, d2 = op[1](x, op[2])
                dv = (d1, d2)
            derivs.append(dv)
        return x, acts, derivs


def _value(values, module, attr, name):
    t = getattr(module, attr)
    return t if name is None else values[name]


def contract_plan(net, layout, projection, loss, x_sample, w):
    """The plan for ``net`` (checked on ``x_sample`` against the module itself), or raise
    :class:`Unsupported` with the reason."""
    if projection is None or getattr(projection, "kind", None) != "dense":
        raise Unsupported("only dense projections are supported (sparse, Fastfood and the "
                          "full space use the reverse engine)")
    if loss not in ("cross_entropy", "mse"):
        raise Unsupported(f"loss {loss!r}")
    if x_sample.dtype != w.dtype:
        raise Unsupported("integer inputs (embeddings) are not supported")
    plan = _Plan(net, layout)
    with torch.no_grad():
        z, _, _ = plan.forward(layout.unflatten(w), x_sample)
        ref = layout.call(net, w, x_sample)
    if z.shape != ref.shape or not torch.allclose(z, ref, rtol=1e-5, atol=1e-6):
        raise Unsupported("the chain of its layers does not reproduce the model's output")
    return plan


def _rows(P, plan, u=None, b=None):
    """Per parameter name, its block of the directions as a contiguous ``(d, numel)``; on the
    hypersphere (``u``, ``b = P^T u``) the block of ``M = (I - u u^T) P``."""
    rows = {}
    for name, sl in plan.slices.items():
        blk = P.weight[sl].T.contiguous()
        if u is not None:
            blk -= b[:, None] * u[sl][None]
        rows[name] = blk
    return rows


def _gn(U, z, yb, loss, n):
    """``sum_n U_n^T A_n U_n / n`` for tangents ``U`` (B, d, C)."""
    if loss == "cross_entropy":
        p = torch.softmax(z, dim=-1)
        AU = p[:, None, :] * (U - (U @ p[:, :, None]))  # diag(p) U - p p^T U, per sample
    else:
        AU = logit_hessian(z[:1], yb[:1], loss)[0, 0, 0] * U  # 2 I / C
    d = U.shape[1]
    return U.transpose(0, 1).reshape(d, -1) @ AU.transpose(0, 1).reshape(d, -1).T / n


def _batch(plan, values, rows, xb, yb, loss, n, hessian, acc):
    """Add one sub-batch's loss, G, and (``hessian``) the C and s'' terms to ``acc``."""
    z, acts, derivs = plan.forward(values, xb)
    acc["L"] += per_sample_loss(z, yb, loss).sum() / n
    B = len(xb)
    deltas = [None] * len(plan.ops)  # dL/d(output of op)
    if hessian:
        delta = logit_gradient(z, yb, loss) / n
        for i in range(len(plan.ops) - 1, -1, -1):
            op = plan.ops[i]
            deltas[i] = delta
            if op[0] == "linear":
                if "g" in acc:  # the gradient (hypersphere only)
                    if op[2] is not None:
                        acc["g"][op[2]] += (delta.T @ acts[i]).reshape(-1)
                    if op[3] is not None:
                        acc["g"][op[3]] += delta.sum(0)
                delta = delta @ _value(values, op[1], "weight", op[2])
            elif op[0] == "act" and derivs[i][0] is not None:
                delta = delta * derivs[i][0]
            elif op[0] == "flatten":
                delta = delta.reshape(acts[i].shape)
    t = None  # tangent (B, d, ...) of the current activation; None: zero
    for i, op in enumerate(plan.ops):
        if op[0] == "flatten":
            t = None if t is None else t.reshape(B, t.shape[1], -1)
        elif op[0] == "linear":
            m, wn, bn = op[1], op[2], op[3]
            a = acts[i]
            if hessian and t is not None and wn is not None:  # C += delta^T da (out, d*in)
                C = deltas[i].T @ t.reshape(B, -1)
                acc["C"][wn] = C if wn not in acc["C"] else acc["C"][wn].add_(C)
            new = None
            if wn is not None:
                new = (a @ rows[wn].view(-1, a.shape[1]).T).view(B, -1, m.out_features)
            if t is not None:
                tw = t @ _value(values, m, "weight", wn).T
                new = tw if new is None else new.add_(tw)
            if bn is not None:
                new = (rows[bn][None].expand(B, -1, -1) if new is None
                       else new.add_(rows[bn][None]))
            t = new
        elif t is not None:  # activation
            d1, d2 = derivs[i]
            if hessian and d2 is not None:  # (g s'') . dh_j dh_k
                s = deltas[i] * d2
                tt = t.transpose(0, 1).reshape(t.shape[1], -1)
                acc["S"] += tt @ (t * s[:, None, :]).transpose(0, 1).reshape(t.shape[1], -1).T
            if d1 is not None:
                t = t * d1[:, None, :]
    d = acc["S"].shape[0]
    if t is None:  # the output depends on no direction
        t = torch.zeros(B, d, z.shape[-1], dtype=z.dtype, device=z.device)
    acc["G"] += _gn(t, z, yb, loss, n)


def _sub_batch(plan, xb, d):
    widths = [op[1].out_features for op in plan.ops if op[0] == "linear"]
    per = d * max(widths) * xb.element_size()
    return int(max(8, TANGENT_BYTES // per))


def _point(plan, layout, base, P, kind, X, y, loss, gauss_newton, hessian, batch_size, feed):
    dtype, device, d = base.dtype, base.device, P.d
    values = layout.unflatten(base)
    sphere = kind == "hypersphere"
    if sphere:
        radius = base.norm()
        u = base / radius
        b = P.transpose(u[None])[0]
        rows = _rows(P, plan, u, b)
    else:
        rows = _rows(P, plan)
    zero = torch.zeros(d, d, dtype=dtype, device=device)
    acc = {"L": torch.zeros((), dtype=dtype, device=device), "G": zero.clone(),
           "S": zero.clone(), "C": {}}
    if sphere:
        acc["g"] = {name: torch.zeros(numel, dtype=dtype, device=device)
                    for name, numel in zip(layout.names, layout.numels, strict=True)}
    n, sb = len(X), None
    for xb, yb in feed(X, y, batch_size, dtype, device):
        sb = sb or _sub_batch(plan, xb, d)
        for s in range(0, len(xb), sb):
            _batch(plan, values, rows, xb[s : s + sb], yb[s : s + sb], loss, n, hessian, acc)
    G = acc["G"]
    if not hessian:
        return None, G, acc["L"]
    M = zero.clone()
    for wn, C in acc["C"].items():  # C: (out, d * in) -> M_jk = <V_j, C_k>
        out, inp = layout.shapes[layout.names.index(wn)]
        Ck = C.view(out, d, inp).transpose(0, 1).reshape(d, -1)
        M += rows[wn] @ Ck.T
    H = G + M + M.T + acc["S"]
    if sphere:
        g = torch.cat([acc["g"][name] for name in layout.names])
        a = P.transpose(g[None])[0]
        gu = g @ u
        gram = P.weight.T @ P.weight
        curv = -(torch.outer(a, b) + torch.outer(b, a)) - gu * gram + 3 * gu * torch.outer(b, b)
        H = H + curv / radius
    return H, G if gauss_newton else None, acc["L"]


def contract_hessian(plan, layout, bases, P, kind, X, y, loss, gauss_newton, batch_size, feed,
                     hessian=True):
    """Stacked ``(R, d, d)`` Hessians (``None`` unless ``hessian``), Gauss-Newton parts
    (``None`` unless ``gauss_newton`` or not ``hessian``) and ``(R,)`` losses at ``bases``."""
    out = [_point(plan, layout, base, P, kind, X, y, loss, gauss_newton or not hessian,
                  hessian, batch_size, feed) for base in bases]
    H = torch.stack([o[0] for o in out]) if hessian else None
    G = torch.stack([o[1] for o in out]) if (gauss_newton or not hessian) else None
    return H, G, torch.stack([o[2] for o in out])
