"""Reverse-over-reverse subspace Hessian: one retained gradient graph, batched double backward.

For each point and mini-batch the gradient ``g = J^T r`` (``r = dL/dz``, the gradient of the
loss with respect to the logits) is built once with ``create_graph=True``. The directions
then go through its graph in blocks of ``c`` with one batched double backward each
(``is_grads_batched``): the derivative of ``<g, v>`` with respect to the parameters is the
Hessian-vector product ``H v``, and with respect to ``r`` it is ``J v``, the directional
derivative of the logits that the Gauss-Newton term needs. So the primal forward and
backward are never repeated per block (as they are in a vmapped forward-over-reverse
``jvp(grad)``), and ``G`` costs nothing beyond its ``d x d`` contraction.

The block size keeps every per-block tensor under glibc's largest ``malloc`` mmap threshold
(32 MiB) on CPU, so freed blocks are reused from the heap instead of being returned to the
kernel and faulted in again (half of the time of a naive large-block run is spent there).

Hypersphere: ``w(theta) = r (w0 + P theta) / |w0 + P theta|`` with ``r = |w0|``. At
``theta = 0`` its Jacobian is ``M = P - u b^T`` (``u = w0 / r``, ``b = P^T u``), and

    H_theta = M^T H_w M + P^T [ -(g u^T + u g^T) - (g.u) I + 3 (g.u) u u^T ] P / r

with ``g`` the full gradient: the second term is the curvature of the sphere seen by the
loss, computed in closed form from ``a = P^T g``, ``b`` and the Gram matrix ``P^T P``.
"""

from __future__ import annotations

import math

import torch
from torch.func import functional_call

from ._losses import logit_hessian, per_sample_loss

__all__ = ["reverse_hessian", "reverse_chunk", "gradient_graph", "hessian_block", "output_sizes",
           "LOOP_MAX",
           "MMAP_THRESHOLD_BYTES"]

#: glibc's largest dynamic mmap threshold on 64-bit Linux (``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD_BYTES = 32 * 2**20


def output_sizes(net, layout, w, xb):
    """Numel per sample of every module output on one sample (hooks on all modules)."""
    sizes = []
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, o: sizes.append(o.numel() if torch.is_tensor(o) else 0)
        )
        for m in net.modules()
    ]
    try:
        with torch.no_grad():
            layout.call(net, w, xb[:1])
    finally:
        for h in hooks:
            h.remove()
    return sizes or [1]


def reverse_chunk(net, layout, w, xb, d, device, *, dense=True) -> int:
    """Directions per batched double backward.

    CPU: the largest per-block tensor (a block of parameter-space directions, ``c x D``, or
    of one layer's activations, ``c x B x width``) stays below 32 MiB. GPU: the tangent
    activations of a block fit in a quarter of the free memory. Projections that never
    store a ``D x d`` matrix (sparse, Fastfood, ``dense=False``) get ``c < d``, so no
    ``d x D`` block exists either.
    """
    sizes = output_sizes(net, layout, w, xb)
    item = w.element_size()
    if device.type == "cuda":
        per_dir = (6 * sum(sizes) * len(xb) + 4 * layout.D) * item
        free, _ = torch.cuda.mem_get_info(device)
        chunk = (free // 4) // per_dir
    else:
        per_dir = max(max(sizes) * len(xb), layout.D) * item
        chunk = MMAP_THRESHOLD_BYTES // per_dir
    chunk = int(max(1, min(d, chunk)))
    if not dense and d > 1:
        chunk = min(chunk, math.ceil(d / 2))
    return chunk


def _columns(P, start, stop, D, dtype, device):
    """Rows ``start..stop`` of ``P^T``: the block's directions in parameter space."""
    if P is None:  # the full space: unit vectors
        V = torch.zeros(stop - start, D, dtype=dtype, device=device)
        V[torch.arange(stop - start), torch.arange(start, stop)] = 1
        return V
    return P.columns(start, stop)


def gradient_graph(net, layout, base, xb, yb, loss, n):
    """Parameters (leaves), logits ``z``, ``r = dL/dz`` and ``g = J^T r`` with their graph.

    ``L`` is this batch's share of the mean loss (``sum / n``); ``g`` keeps its graph
    (``create_graph``) for the double backward of :func:`hessian_block`.
    """
    params = [t.detach().requires_grad_() for t in layout.unflatten(base).values()]
    values = dict(zip(layout.names, params, strict=True))
    z = functional_call(net, layout.bind(values), (xb,), tie_weights=False)
    lsum = per_sample_loss(z, yb, loss).sum() / n
    (r,) = torch.autograd.grad(lsum, z, create_graph=True)
    g = torch.autograd.grad(z, params, grad_outputs=r, create_graph=True, allow_unused=True,
                            materialize_grads=True)
    return params, z, r, g, lsum.detach()


#: On CPU, blocks of at most this many directions go one at a time through the retained
#: graph: looping was faster than the batched double backward (legacy vmap) at every d
#: measured (docs/performance.md, "Design notes"), so all CPU blocks loop; blocks still
#: bound the memory of the directions (``c x D``) and batch ``P^T``. The batched path is
#: used on GPUs for blocks of two or more directions (tested on CPU with ``LOOP_MAX = 0``);
#: one direction is always a plain double backward (its batched rules run more ops).
LOOP_MAX = 2**62


def hessian_block(layout, params, r, g, V, jv=True):
    """``H V^T`` as ``(c, D)`` and ``J V^T`` as ``(c, *z.shape)`` for directions ``V`` (c, D).

    ``jv=False``: ``H V^T`` only (``None`` for ``J V^T``); the double backward then stops at
    the parameters instead of also reaching ``r`` (less work).
    """
    opts = dict(retain_graph=True, allow_unused=True, materialize_grads=True)
    inputs = [*params, r] if jv else params
    if len(V) == 1 or (V.device.type == "cpu" and len(V) <= LOOP_MAX):
        HV, Us = None, []
        for i, v in enumerate(V):
            out = torch.autograd.grad(g, inputs, grad_outputs=list(layout.unflatten(v).values()),
                                      **opts)
            if HV is None:  # made after the first double backward: not alive during it
                HV = torch.empty_like(V)
            torch.cat([t.reshape(-1) for t in out[: len(params)]], out=HV[i])
            if jv:
                Us.append(out[-1])
            del out  # else the last H v pieces live on through the next double backward
        return HV, torch.stack(Us) if jv else None
    vs = list(layout.unflatten(V).values())
    out = torch.autograd.grad(g, inputs, grad_outputs=vs, is_grads_batched=True, **opts)
    HV = batched_flat(out[: len(params)], params, len(V))
    return HV, out[-1] if jv else None


def batched_flat(grads, params, c: int) -> torch.Tensor:
    """``(c, D)`` from the per-parameter results of a batched ``autograd.grad`` call.

    With ``materialize_grads=True`` the zero gradient of a parameter the output does not
    depend on (an unused head, a branch not taken) comes back without the batch dimension;
    it is broadcast here.
    """
    return torch.cat([(t if t.dim() > p.dim() else t.expand(c, *p.shape)).reshape(c, -1)
                      for t, p in zip(grads, params, strict=True)], dim=1)


class _ReverseBatch:
    """One mini-batch, reverse-over-reverse: the gradient graph once, then any blocks."""

    def __init__(self, net, layout, base, xb, yb, loss, n):
        self.layout = layout
        self.params, self.z, self.r, self.g, self.loss = gradient_graph(
            net, layout, base, xb, yb, loss, n)

    @property
    def grad(self):
        """The batch's share of the full gradient, flat (needed on the hypersphere only)."""
        return torch.cat([t.detach().reshape(-1) for t in self.g])

    def block(self, V, jv=True):
        return hessian_block(self.layout, self.params, self.r, self.g, V, jv)


def _transpose(P, V):
    return V if P is None else P.transpose(V)


def _point(net, layout, base, P, kind, X, y, loss, n, batch_size, chunk, gauss_newton,
           batches):
    """Hessian (d x d), Gauss-Newton part and mean loss at one point ``base``."""
    d = layout.D if P is None else P.d
    dtype, device = base.dtype, base.device
    H = torch.zeros(d, d, dtype=dtype, device=device)
    G = torch.zeros_like(H) if gauss_newton else None
    L = torch.zeros((), dtype=dtype, device=device)
    sphere = kind == "hypersphere"
    if sphere:
        radius = base.norm()
        u = base / radius
        b = _transpose(P, u[None])[0]  # P^T u
        gram = torch.zeros_like(H)
        g_full = torch.zeros_like(base)
    for bi, (xb, yb) in enumerate(batches(X, y, batch_size, dtype, device)):
        work = _ReverseBatch(net, layout, base, xb, yb, loss, n)
        # J M for this batch, filled block by block: one buffer, not a list of d small
        # tensors (those, long-lived between the large transient blocks, fragment the heap:
        # +1.5 GB of resident memory over 1,000 directions of a ResNet-18 on CPU)
        Us = torch.empty((d, *work.z.shape), dtype=dtype, device=device) if gauss_newton else None
        for s in range(0, d, chunk):
            e = min(d, s + chunk)
            V = _columns(P, s, e, layout.D, dtype, device)
            if sphere:
                if bi == 0:
                    gram[s:e] = _transpose(P, V)
                V = V - (V @ u)[:, None] * u  # columns of M = (I - u u^T) P
            HV, U = work.block(V, gauss_newton)  # (c, D): H_w M e_i, and J M e_i if needed
            block = _transpose(P, HV)  # (c, d): P^T H_w M e_i
            if sphere:
                block = block - (HV @ u)[:, None] * b  # M^T = P^T - b u^T
            H[s:e] += block
            if gauss_newton:
                Us[s:e] = U
            del HV, V
        L += work.loss
        if sphere:
            g_full += work.grad
        if gauss_newton:
            A = logit_hessian(work.z.detach(), yb, loss) / n  # (B, C, C)
            U = Us.permute(1, 2, 0)  # (B, C, d): J M for this batch
            G += U.flatten(0, 1).T @ (A @ U).flatten(0, 1)
        del work
    if sphere:
        a = _transpose(P, g_full[None])[0]
        gu = g_full @ u
        curv = -(torch.outer(a, b) + torch.outer(b, a)) - gu * gram + 3 * gu * torch.outer(b, b)
        H += curv / radius
    return H, G, L


def reverse_hessian(net, layout, bases, P, kind, X, y, loss, gauss_newton, batch_size, chunk,
                    batches):
    """Stacked ``(R, d, d)`` Hessians, Gauss-Newton parts and ``(R,)`` losses at ``bases``."""
    n = len(X)
    out = [_point(net, layout, base, P, kind, X, y, loss, n, batch_size, chunk, gauss_newton,
                  batches) for base in bases]
    H = torch.stack([o[0] for o in out])
    G = torch.stack([o[1] for o in out]) if gauss_newton else None
    return H, G, torch.stack([o[2] for o in out])
