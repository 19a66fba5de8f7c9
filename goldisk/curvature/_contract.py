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

Convolutions are the same with ``V_k a`` a convolution by the direction's kernel and
``C_k`` a convolution's weight gradient (``_contract_ops``).

Scope: ``nn.Sequential`` chains (nested ones too) and goldisk's ``MLP``, ``LeNet300100``,
``LeNet5`` and ``SmallCNN`` of ``nn.Linear``, ``nn.Conv2d``, ``nn.AvgPool2d``,
``nn.Flatten`` and elementwise activations, dense projections (sparse ones on
hyperplanes: CSR blocks, see :class:`SparseBlock`), softmax cross-entropy or
MSE. Anything else is refused by :func:`contract_plan`, and ``method="auto"`` then uses
the reverse engine.
"""

from __future__ import annotations

import math

import torch

from ..projections import to_csr as _to_csr
from ._contract_ops import Unsupported, chain_ops
from ._losses import logit_gradient, logit_hessian, per_sample_loss

__all__ = ["Unsupported", "contract_plan", "contract_hessian", "plan_for"]

#: Bytes of one ``(sub-batch, d, width)`` tangent: the batch is cut into sub-batches so
#: that the widest tangent stays under glibc's mmap threshold (see ``_reverse``).
TANGENT_BYTES = 32 * 2**20


class _Plan:
    """The model as a chain of ops (``_contract_ops``), checked against the model."""

    def __init__(self, net, layout):
        self.ops = chain_ops(net, layout)
        self.slices = dict(layout.slices())
        self.first = next((i for i, op in enumerate(self.ops)
                           if op.kind == "layer" and (op.wn or op.bn)), None)
        self.width = 1

    def forward(self, values, x):
        """Logits, and per op its input (``acts``) and activation derivatives."""
        acts, derivs = [], []
        for op in self.ops:
            acts.append(x)
            x, d1, d2 = op.forward(values, x)
            derivs.append((d1, d2))
        return x, acts, derivs


def contract_plan(net, layout, projection, loss, x_sample, w, kind="hyperplane"):
    """The plan for ``net`` (checked on ``x_sample`` against the module itself), or raise
    :class:`Unsupported` with the reason."""
    pk = getattr(projection, "kind", None)
    if pk not in ("dense", "sparse") or (pk == "sparse" and kind != "hyperplane"):
        raise Unsupported("only dense projections, and sparse ones on hyperplanes, are "
                          "supported (Fastfood and the full space use the reverse engine)")
    if loss not in ("cross_entropy", "mse"):
        raise Unsupported(f"loss {loss!r}")
    if x_sample.dtype != w.dtype:
        raise Unsupported("integer inputs (embeddings) are not supported")
    plan = _Plan(net, layout)
    if plan.first is None:
        raise Unsupported("no layer has a trainable parameter")
    with torch.no_grad():
        z, acts, _ = plan.forward(layout.unflatten(w), x_sample)
        ref = layout.call(net, w, x_sample)
    if z.shape != ref.shape or z.dim() != 2 or not torch.allclose(z, ref, rtol=1e-5, atol=1e-6):
        raise Unsupported("the chain of its layers does not reproduce the model's output")
    plan.width = max(a[0].numel() for a in [*acts[plan.first + 1:], z])  # widest tangent
    return plan


def plan_for(method, net, layout, w0, projection, loss, X, y, dtype, device, feed,
             scale_chunk, kind="hyperplane"):
    """The plan when ``method`` asks for this engine (``"contract"``: or a ValueError naming
    why not) or ``"auto"`` picks it (CPU, no ``scale_chunk > 1``, a supported model, checked
    on two samples), else ``None``."""
    if method == "auto" and (device.type != "cpu" or (scale_chunk or 1) > 1):
        return None
    xb, _ = next(feed(X[:2], y[:2], 2, dtype, device))
    try:
        return contract_plan(net, layout, projection, loss, xb, w0, kind)
    except Unsupported as err:
        if method == "auto":
            return None
        raise ValueError(
            f"method='contract' cannot handle this problem: {err}. Use method='auto' (the "
            "reverse engine takes any model) or method='reverse'.") from None


class SparseBlock:
    """A linear layer's block of a sparse ``P`` in CSR: ``(d * out, in)`` for the tangents
    ``V_k a`` and ``(d * in, out)`` for ``V_j^T delta``. With it ``<V_j, C_k>`` is summed per
    sub-batch as ``sum_n (V_j^T delta_n) . da_k[n]``, so no ``d x numel`` array exists."""

    def __init__(self, k, r, v, d, out, inp):
        # (each (row, column) of P once, so each entry once here too)
        self.tangent = _to_csr(k * out + r // inp, r % inp, v, d * out, inp)
        self.back = _to_csr(k * inp + r % inp, r // inp, v, d * inp, out)

    def contract(self, delta, t):
        """``sum_n (V_j^T delta_n) . t_k[n]`` for tangents ``t`` (B, d, in): (d, d)."""
        d = t.shape[1]
        Vd = (self.back @ delta.T).view(d, -1)  # (j, i, n)
        return Vd @ t.permute(1, 2, 0).reshape(d, -1).T


def _sparse_rows(P, plan, d):
    """Rows of a sparse ``P`` per parameter: :class:`SparseBlock` for linear weights, dense
    ``(d, numel)`` for biases and kernels (small)."""
    linear = {op.wn: op.m.weight.shape for op in plan.ops
              if op.kind == "layer" and not op.conv and op.wn is not None}
    rows = {}
    for name, sl in plan.slices.items():
        mask = (P.rows >= sl.start) & (P.rows < sl.stop)
        r, k, v = P.rows[mask] - sl.start, P.cols[mask], P.vals[mask]
        if name in linear:
            rows[name] = SparseBlock(k, r, v, d, *linear[name])
        else:
            rows[name] = torch.zeros(d, sl.stop - sl.start, dtype=P.vals.dtype,
                                     device=P.vals.device).index_put_((k, r), v, accumulate=True)
    return rows


def _rows(P, plan, u=None, b=None):
    """Per parameter name, its block of the directions as a contiguous ``(d, numel)``; on the
    hypersphere (``u``, ``b = P^T u``) the block of ``M = (I - u u^T) P``."""
    if P.kind == "sparse":
        return _sparse_rows(P, plan, P.d)
    rows = {}
    for name, sl in plan.slices.items():
        blk = P.weight[sl].T.contiguous()  # (P.weight itself when d = 1: never in place)
        rows[name] = blk if u is None else blk - b[:, None] * u[sl][None]
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
    B, d = len(xb), acc["S"].shape[0]
    deltas = [None] * len(plan.ops)  # dL/d(output of op)
    if hessian:
        delta = logit_gradient(z, yb, loss) / n
        for i in range(len(plan.ops) - 1, plan.first - 1, -1):
            op = plan.ops[i]
            deltas[i] = delta
            if i == plan.first and "g" not in acc:
                break
            if op.kind == "layer":
                if "g" in acc:  # the gradient (hypersphere only)
                    gw, gb = op.grads(acts[i], delta)
                    if op.wn is not None:
                        acc["g"][op.wn] += gw
                    if op.bn is not None:
                        acc["g"][op.bn] += gb
                if i > plan.first:
                    delta = op.backward(values, acts[i], delta)
            elif op.kind == "act":
                if derivs[i][0] is not None:
                    delta = delta * derivs[i][0]
            else:
                delta = op.backward(acts[i], delta)
    t = None  # tangent (B, d, ...) of the current activation; None: zero
    for i, op in enumerate(plan.ops):
        if op.kind == "layer":
            if hessian and t is not None and isinstance(rows.get(op.wn), SparseBlock):
                m = rows[op.wn].contract(deltas[i], t)  # <V_j, C_k> of this sub-batch
                acc["S"] += m + m.T
            elif hessian and t is not None and op.wn is not None:  # C += delta^T da
                C = op.cterm(t, deltas[i], B, d)
                acc["C"][op.wn] = C if op.wn not in acc["C"] else acc["C"][op.wn].add_(C)
            t = op.tangent(values, rows, acts[i], t, B, d)
        elif t is None:
            continue
        elif op.kind == "linop":
            t = op.tangent(t, B, d)
        else:
            d1, d2 = derivs[i]
            if hessian and d2 is not None:  # (g s'') . dh_j dh_k
                s = (deltas[i] * d2).unsqueeze(1)
                acc["S"] += t.transpose(0, 1).reshape(d, -1) @ (t * s).transpose(0, 1).reshape(
                    d, -1).T
            if d1 is not None:
                d1 = d1.unsqueeze(1)
                t = t.mul_(d1) if t.is_contiguous() else t * d1  # (an expanded bias: copy)
    if t is None:  # the output depends on no direction
        t = torch.zeros(B, d, z.shape[-1], dtype=z.dtype, device=z.device)
    acc["G"] += _gn(t, z, yb, loss, n)


def _sub_batch(plan, xb, d):
    return int(max(8, TANGENT_BYTES // (d * plan.width * xb.element_size())))


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
        shape = layout.shapes[layout.names.index(wn)]
        out, inp = shape[0], math.prod(shape[1:])
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
