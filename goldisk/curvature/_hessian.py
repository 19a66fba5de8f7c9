"""Exact loss Hessian on a low-dimensional subspace, with its Gauss-Newton split.

For parameters ``w(theta) = w0 + P theta`` (a hyperplane) the d x d Hessian of the mean
loss ``L`` at ``theta = 0`` is ``P^T H P``. It is computed column by column, accumulated
over mini-batches (memory is bounded by ``batch_size`` and ``chunk_size``, never by the
dataset), by one of two exact engines: reverse-over-reverse (``goldisk.curvature._reverse``:
one retained gradient graph per mini-batch, a double backward per direction; the CPU
default) or forward-over-reverse (``jvp(grad L)(theta; e_i)`` vmapped over the directions
and over radii; the CUDA default); on CPU, chains of linear layers and elementwise
activations under a dense (or, on hyperplanes, sparse) projection go to the contraction engine
(``goldisk.curvature._contract``: forward tangents contracted layer by layer). All give
the directional derivatives of the logits, ``U = J P``, from which the Gauss-Newton term
``G = sum_n U_n^T A_n U_n`` (``A_n = d^2 loss_n / dz_n^2``) is formed directly. Nothing of
size D x D is ever allocated, and a :class:`~goldisk.projections.Projection` that never
stores a D x d matrix (sparse, Fastfood) keeps it that way.
"""

from __future__ import annotations

import contextvars
import math
import warnings
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.func import grad, jvp, vmap

from .._checks import nonfinite_cause
from .._flat import ParamLayout, nonfinite_parameters, parameter_vector
from .._validation import (
    TRANSFORMS_LOCK,
    check_outputs,
    check_positive_int,
    check_scales,
    deterministic,
    second_order,
)
from ..projections import as_projection
from ._contract import contract_hessian, plan_for
from ._losses import logit_hessian, per_sample_loss
from ._prepare import _on, batches, checked_inputs, prepare_model
from ._reverse import output_sizes, reverse_chunk, reverse_hessian

__all__ = ["CurvatureResult", "subspace_hessian", "batches", "prepare_model", "METHODS"]

MAX_FULL_D = 20_000
METHODS = ("auto", "contract", "reverse", "forward")
#: Set by ``subspace_gauss_newton``: only G is wanted (the contraction engine then skips
#: the H-term; the other engines compute H anyway and it is dropped).
G_ONLY = contextvars.ContextVar("goldisk_g_only", default=False)


@dataclass
class CurvatureResult:
    """Subspace Hessian ``H`` (..., d, d), Gauss-Newton part ``G`` and the loss there.

    A leading batch dimension is present when several points (``scales``) were given.
    ``Hterm`` is ``H - G``, the part carrying the second derivatives of the logits.
    ``H`` is ``None`` in the result of ``subspace_gauss_newton`` (G only).
    """

    H: torch.Tensor
    G: torch.Tensor | None
    loss: torch.Tensor
    n_samples: int

    @property
    def Hterm(self):
        return None if self.G is None or self.H is None else self.H - self.G

    def block(self, k: int) -> CurvatureResult:
        """The result for the first ``k`` directions: the leading k x k blocks."""
        G = None if self.G is None else self.G[..., :k, :k]
        H = None if self.H is None else self.H[..., :k, :k]
        return CurvatureResult(H, G, self.loss, self.n_samples)

    def top_eigenvalues(self, k: int = 1, *, operator: str = "hessian",
                        which: str = "largest"):
        """As :func:`goldisk.top_eigenvalues` for the subspace matrix (exact ``eigvalsh``):
        descending numpy ``(..., k)``; ``operator`` in ``"hessian"``, ``"ggn"``, ``"hterm"``."""
        from ._subspace_spectrum import result_top_eigenvalues

        return result_top_eigenvalues(self, k, operator, which)

    def spectral_density(self, *, operator: str = "hessian", sigma=None, n_points=1000):
        """As :func:`goldisk.spectral_density`, from the exact eigenvalues (weight 1/d)."""
        from ._subspace_spectrum import result_spectral_density

        return result_spectral_density(self, operator, sigma, n_points)


def _auto_chunk(model, layout, w, xb, n_dirs, n_scales, device):
    """Directions per vmap chunk and radii per vectorized group for a memory budget.

    The tangent activations of one direction on one batch take about six times the
    activations of the batch. The budget is 2 GiB on CPU and a quarter of the free memory
    on a GPU. On CPU radii are never vectorized (no speed gain, only memory); on a GPU
    they are, as far as the budget allows, so that one call does the work of many.
    """
    sizes = output_sizes(model, layout, w, xb)
    item = w.element_size()
    per_dir = 6 * max(sum(sizes), 1) * len(xb) * item + 4 * w.numel() * item
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
    else:
        budget = 2 * 2**30
    chunk = int(max(1, min(n_dirs, budget // per_dir)))
    if device.type != "cuda" or chunk < n_dirs:
        return chunk, 1
    return chunk, int(max(1, min(n_scales, budget // (per_dir * n_dirs))))


def subspace_hessian(
    model: nn.Module,
    X,
    y,
    projection=None,
    *,
    point=None,
    kind: str = "hyperplane",
    scales=None,
    loss: str = "cross_entropy",
    gauss_newton: bool = True,
    batch_size: int = 512,
    chunk_size: int | None = None,
    scale_chunk: int | None = None,
    method: str = "auto",
    dtype=torch.float64,
    device=None,
) -> CurvatureResult:
    """Exact Hessian of the mean loss over ``(X, y)`` on a random subspace.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits. Only its parameters' values at ``point`` matter.
    X, y : array-like or tensors
        The whole dataset; the mean loss is taken over all ``len(X)`` samples.
    projection : Projection, or a D x d tensor or array, optional
        Maps ``theta`` (d) to a parameter direction (D); a matrix is used as it is, its
        columns not normalized (see :func:`goldisk.projections.as_projection`). ``None``
        means the full space: the exact D x D Hessian (only for ``D <= 20000``).
    point : tensor (D,), optional
        Origin ``w0`` of the subspace; the model's current parameters by default.
    kind : {"hyperplane", "hypersphere"}
        ``hyperplane``: ``w = w0 + P theta``. ``hypersphere``:
        ``w = |w0| (w0 + P theta) / |w0 + P theta|``, the surface of fixed radius.
    scales : sequence of float, optional
        Evaluate at every point ``s * w0`` (a radius sweep with one subspace); the result
        then has a leading dimension ``len(scales)``.
    loss : {"cross_entropy", "mse"}
    gauss_newton : bool
        Also compute ``G = P^T J^T (d^2 l/dz^2) J P`` directly.
    batch_size, chunk_size : int
        Samples per mini-batch; directions per vectorized chunk (auto if None). The result
        is the Hessian of the mean loss over all of ``X`` whatever the mini-batch; peak
        memory grows with it (the reverse engine keeps one mini-batch's gradient graph:
        about three times the activations of a forward-backward pass), so a smaller
        ``batch_size`` trades a little speed for memory.
    scale_chunk : int, optional
        Points (``scales``) evaluated together in one vectorized pass (``method="forward"``
        only); auto: as many as a quarter of the free memory allows on a GPU.
    method : {"auto", "contract", "reverse", "forward"}
        ``contract``: the contraction engine (``goldisk.curvature._contract``) for chains of
        ``nn.Linear``/``nn.Conv2d`` layers, average pooling and elementwise activations
        (goldisk's models included) under a dense projection, or a sparse one on
        hyperplanes: all
        directions' forward tangents as matrix products, no ``H v`` in R^D (2.2-2.3x less
        CPU time than the reverse engine on an MLP 784-200-200-10 at d = 50-200, and the
        default sweep 2.6-2.9x faster, docs/performance.md; more memory: a copy of ``P``); a
        ``ValueError`` for any other model or projection; ``chunk_size`` and
        ``scale_chunk`` do not apply.
        ``reverse``: reverse-over-reverse, one retained gradient graph per point and batch,
        directions in blocks through a batched double backward (fastest on CPU for other
        models, see ``goldisk.curvature._reverse``). ``forward``: forward-over-reverse
        ``vmap(jvp(grad))`` over the directions, vectorized over the points too (fastest on
        a GPU for radius sweeps). ``auto``: ``forward`` on CUDA or when ``scale_chunk > 1``
        is asked for, else ``contract`` where it applies and ``reverse`` elsewhere (the
        contraction engine is not yet measured on a GPU). All are exact; they agree to
        rounding.
    dtype : torch.float64 or torch.float32 (or their names), default=torch.float64
        Precision of the computation (the model is copied when it differs); half
        precision is refused.
    device : torch.device or str, optional
        Where it runs; default: the model's device.

    Returns
    -------
    CurvatureResult

    Examples
    --------
    >>> import torch
    >>> from goldisk.projections import make_projection
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> X, y = torch.randn(32, 4, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 3
    >>> P = make_projection("dense", D=67, d=5, random_state=0)
    >>> res = subspace_hessian(net, X, y, P)
    >>> res.H.shape, bool(torch.allclose(res.H, res.H.T))
    (torch.Size([5, 5]), True)
    """
    if kind not in ("hyperplane", "hypersphere"):
        raise ValueError(f"kind must be 'hyperplane' or 'hypersphere', got {kind!r}.")
    batch_size = check_positive_int(batch_size, "batch_size")
    if gauss_newton not in (True, False):
        raise ValueError(f"gauss_newton must be True or False, got {gauss_newton!r}.")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    chunk_size = check_positive_int(chunk_size, "chunk_size", allow_none=True)
    scale_chunk = check_positive_int(scale_chunk, "scale_chunk", allow_none=True)
    scales = check_scales(scales)
    X, y, dtype, device = checked_inputs(model, X, y, dtype, device)
    if projection is not None:  # a D x d matrix of the user's: a DenseProjection of it
        projection = as_projection(projection, ParamLayout(model).D, "projection")
    if point is not None and not bool(torch.isfinite(torch.as_tensor(point)).all()):
        raise ValueError("point contains NaN or infinite values; pass a finite parameter "
                         "vector (or point=None for the model's own parameters).")
    if nonfinite_parameters(model):
        warnings.warn(f"{nonfinite_cause(model)}: the Hessian is NaN.", RuntimeWarning,
                      stacklevel=2)
    # torch.func's transform state is process-global: one at a time
    with TRANSFORMS_LOCK, second_order():
        feed = partial(batches, integer_input=check_outputs(model, X, y, loss))
        return _subspace_hessian(model, X, y, projection, point, kind, scales, loss,
                                 gauss_newton, batch_size, chunk_size, scale_chunk, method,
                                 dtype, device, feed)


def _subspace_hessian(model, X, y, projection, point, kind, scales, loss, gauss_newton,
                      batch_size, chunk_size, scale_chunk, method, dtype, device, feed):
    net = deterministic(prepare_model(model, dtype, device), model)
    layout = ParamLayout(net)
    w0 = (parameter_vector(net) if point is None else torch.as_tensor(point)).to(device, dtype)
    if w0.numel() != layout.D:
        raise ValueError(f"point has {w0.numel()} entries but the model has D={layout.D}.")
    if projection is None:
        if layout.D > MAX_FULL_D:
            raise ValueError(
                f"projection=None asks for the full {layout.D} x {layout.D} Hessian; that is "
                f"only supported for D <= {MAX_FULL_D}. Pass a projection (dim=...) instead."
            )
        P, d = (lambda t: t), layout.D
    else:
        P = _on(projection, dtype, device)
        d = P.d
        if P.D != layout.D:
            raise ValueError(f"projection maps to D={P.D} but the model has D={layout.D}.")
    if kind == "hypersphere" and not bool(w0.ne(0).any()):  # (a float32 norm may underflow)
        raise ValueError("kind='hypersphere' through the point 0 has radius 0; initialize the "
                         "model (or pass a nonzero point) first.")
    scale_list = [1.0] if scales is None else scales  # (floats: check_scales)
    n = len(X)
    if method in ("auto", "contract"):
        plan = plan_for(method, net, layout, w0, projection, loss, X, y, dtype, device, feed,
                        scale_chunk, kind)
        if plan is not None:
            H, G, L = contract_hessian(plan, layout, (w0 * s for s in scale_list), P, kind, X,
                                       y, loss, gauss_newton, batch_size, feed,
                                       hessian=not G_ONLY.get())
            return _finish(H, G, L, n, scales)
        forward = device.type == "cuda" or (scale_chunk or 1) > 1
        method = "forward" if forward else "reverse"
    if method == "reverse":
        bases = (w0 if s == 1.0 else w0 * s for s in scale_list)  # one point at a time
        Pr = None if projection is None else P
        if chunk_size is None:
            xb, _ = next(feed(X, y, batch_size, dtype, device))
            chunk_size = reverse_chunk(net, layout, w0, xb, d, device,
                                       dense=Pr is None or Pr.kind == "dense")
        H, G, L = reverse_hessian(net, layout, bases, Pr, kind, X, y, loss, gauss_newton,
                                  batch_size, chunk_size, feed)
        return _finish(H, G, L, n, scales)
    theta0 = torch.zeros(d, dtype=dtype, device=device)
    eye = torch.eye(d, dtype=dtype, device=device)

    def params(theta, base):
        w = base + P(theta)
        if kind == "hypersphere":
            w = w * (base.norm() / w.norm())
        return w

    def loss_and_logits(theta, base, xb, yb):
        z = layout.call(net, params(theta, base), xb)
        return per_sample_loss(z, yb, loss).sum() / n, z

    grad_fn = grad(loss_and_logits, has_aux=True)

    bases = torch.stack([w0 * s for s in scale_list])  # (R, D)
    R = len(scale_list)
    H = torch.zeros(R, d, d, dtype=dtype, device=device)
    G = torch.zeros_like(H) if gauss_newton else None
    L = torch.zeros(R, dtype=dtype, device=device)

    def columns(base, xb, yb, chunk):
        def column(v):
            _, (hv, dz) = jvp(lambda t: grad_fn(t, base, xb, yb), (theta0,), (v,))
            return hv, dz

        return vmap(column, chunk_size=chunk)(eye)

    def logits(base, xb):
        return layout.call(net, params(theta0, base), xb)

    chunk, rchunk = chunk_size, scale_chunk
    for xb, yb in feed(X, y, batch_size, dtype, device):
        if chunk is None or rchunk is None:
            auto_d, auto_r = _auto_chunk(net, layout, w0, xb, d, R, device)
            chunk = auto_d if chunk is None else chunk
            rchunk = auto_r if rchunk is None else rchunk
        for r0 in range(0, R, rchunk):
            sl = slice(r0, min(R, r0 + rchunk))
            with torch.no_grad():
                z = vmap(logits, in_dims=(0, None))(bases[sl], xb)  # (r, B, C)
                ys = yb.expand(z.shape[0], *yb.shape)
                L[sl] += per_sample_loss(z, ys, loss).sum(-1) / n
            hv, U = vmap(columns, in_dims=(0, None, None, None))(bases[sl], xb, yb, chunk)
            H[sl] += hv
            if gauss_newton:
                A = logit_hessian(z.flatten(0, 1), ys.flatten(0, 1), loss) / n
                A = A.reshape(*z.shape, z.shape[-1])  # (r, B, C, C)
                Ub = U.permute(0, 2, 3, 1)  # (r, B, C, d)
                AU = (A @ Ub).flatten(1, 2)  # (r, B*C, d)
                G[sl] += Ub.flatten(1, 2).transpose(1, 2) @ AU
    return _finish(H, G, L, n, scales)


def _finish(H, G, L, n, scales):
    if G_ONLY.get():
        H = None
    if H is None:  # G only: report on G
        G = 0.5 * (G + G.transpose(-1, -2))
        if scales is None:
            G, L = G[0], L[0]
        return CurvatureResult(None, G, L, n)
    H = 0.5 * (H + H.transpose(-1, -2))
    if scales is None:
        H, L = H[0], L[0]
        G = None if G is None else G[0]
    if not math.isfinite(float(H.abs().max())):
        warnings.warn(
            "the Hessian has non-finite entries (overflow at this radius?).",
            RuntimeWarning,
            stacklevel=3,
        )
    return CurvatureResult(H, G, L, n)
