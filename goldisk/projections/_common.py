"""What the sparse and Fastfood projections share: fixed sparse matrices with fast
products (CSR, blocked on the CPU), caches keyed on tensors' version counters, and the
autograd Function that routes a product through a projection's fast kernels."""

from __future__ import annotations

import warnings

import torch

from ._base import Projection, _caller_level

__all__ = ["_CSRMatrix", "_FixedLinear", "_cache_valid", "_fast_path_ok", "_note_uncached",
           "_to_csr", "_version"]


def _version(t: torch.Tensor) -> int | None:
    """``t``'s version counter (bumped by every in-place change), ``None`` for an inference
    tensor, which has none: a cache keyed on it is then never reused (see ``_cache_valid``)."""
    try:
        return t._version
    except RuntimeError:
        return None


def _to_csr(rows, cols, vals, n_rows: int, n_cols: int) -> torch.Tensor:
    """The ``n_rows x n_cols`` CSR matrix with entries ``vals`` at ``(rows, cols)``.

    ``cols=None`` means ``cols = arange(n_cols)`` (one entry per column, in column order):
    a stable sort of ``rows`` alone then orders the entries, without the ``int64`` sort keys
    and column array (a third of the transient memory at ``n_cols = 2**25``).
    Indices are int32 when they fit (faster sparse kernels on CPU and CUDA).
    """
    if cols is None:
        order = torch.argsort(rows, stable=True)
        cols = order
    else:
        order = torch.argsort(rows * n_cols + cols)
        cols = cols[order]
    counts = torch.bincount(rows, minlength=n_rows)
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(counts, 0, out=crow[1:])
    small = max(n_rows, n_cols, vals.numel()) < 2**31 - 1
    idx = torch.int32 if small else torch.int64
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.filterwarnings("ignore", ".*[Ss]parse CSR tensor support", UserWarning)
        return torch.sparse_csr_tensor(crow.to(idx), cols.to(idx), vals[order].contiguous(),
                                       (n_rows, n_cols), check_invariants=False)


#: On CPU, a CSR matrix-vector product costs a few ns per *row* besides its work per non-zero,
#: which dominates for ``P`` (``D`` rows, about one non-zero each). There a vector product is
#: computed as a sparse-dense product with ``k`` columns and ``k`` times fewer rows: ``P x``
#: reshaped to ``(D / k, k)`` is ``B (x kron I_k)`` with ``B[r // k, c * k + r % k] = P[r, c]``,
#: one SIMD-wide row update per non-zero; ``k`` = 32 bytes of the dtype (8 float32, 4 float64;
#: see docs/performance.md, "Design notes"). Used when the matrix has at most
#: ``_BLOCK_MAX_ROW_NNZ`` non-zeros per row on average.
_BLOCK_BYTES = 32
_BLOCK_MAX_ROW_NNZ = 16


class _CSRMatrix:
    """A fixed ``n_rows x n_cols`` sparse matrix with fast products on 1-D and 2-D inputs.

    Holds the blocked form (when used) and, built on first need, the plain CSR form.
    ``cols=None`` stands for ``arange(n_cols)``, see :func:`_to_csr`.
    """

    def __init__(self, rows, cols, vals, n_rows: int, n_cols: int):
        self.n_rows, self.n_cols = n_rows, n_cols
        self._coo = (rows, cols, vals)
        self._A = None
        self.k = 0
        self.blocked = None
        if vals.device.type == "cpu" and vals.numel() <= _BLOCK_MAX_ROW_NNZ * n_rows:
            k = self.k = max(1, _BLOCK_BYTES // vals.element_size())
            rows = rows.long()
            if cols is None:
                cols = torch.arange(n_cols, device=rows.device)
            self.blocked = _to_csr(rows // k, cols * k + rows % k, vals, -(-n_rows // k),
                                   n_cols * k)
        else:
            self._A = _to_csr(rows, cols, vals, n_rows, n_cols)
        if self._A is None:  # kept to build A if needed
            self._coo = tuple(None if t is None else t.detach() for t in self._coo)
        else:
            self._coo = None

    @property
    def A(self) -> torch.Tensor:
        if self._A is None:
            with torch.no_grad(), torch.inference_mode(False):
                self._A = _to_csr(*self._coo, self.n_rows, self.n_cols)
        return self._A

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` for a vector ``x``, or ``x @ A^T`` for a batch ``x`` of shape (B, n)."""
        if x.dim() == 2:
            return (self.A @ x.T).T.contiguous()
        if self.blocked is None:
            return self.A @ x.contiguous()
        k = self.k
        X = x.new_zeros(x.shape[0], k, k)  # exact zeros off the diagonal: inf/nan stay put
        X.diagonal(dim1=1, dim2=2).copy_(x[:, None].expand(-1, k))
        # in place (``mm`` would compute into a buffer and copy it to its result); beta=0:
        # the uninitialised ``out`` is ignored, its nan/inf are not propagated
        out = x.new_empty(self.blocked.shape[0] * k)
        out.view(-1, k).addmm_(self.blocked, X.view(-1, k), beta=0)
        return out[: self.n_rows]


def _cache_valid(cache, key) -> bool:
    """Whether ``cache = (key', ...)`` was built for ``key`` (tensors compared by identity);
    never when ``key`` holds a ``None`` version (an inference tensor, whose in-place changes
    cannot be seen)."""
    return cache is not None and len(cache[0]) == len(key) and all(
        k is not None for k in key) and all(
        a is b if torch.is_tensor(a) else a == b for a, b in zip(cache[0], key, strict=True)
    )


def _note_uncached(proj, key) -> None:
    """Called where a cache of ``proj`` is (re)built: if ``key`` holds a ``None`` version
    (buffers that are inference tensors, from a projection built under
    ``torch.inference_mode()``), the cache is rebuilt at every product (``_cache_valid``);
    say so once per projection."""
    if any(k is None for k in key) and "_inference_warned" not in proj.__dict__:
        proj.__dict__["_inference_warned"] = True
        warnings.warn(
            f"{type(proj).__name__}'s buffers are inference tensors (it was built under "
            "torch.inference_mode()), whose in-place changes cannot be tracked, so its "
            "cached forms are rebuilt at every product; build it outside inference mode "
            "(torch.no_grad() is fine) for full speed.", RuntimeWarning,
            stacklevel=_caller_level())


#: dtypes with CSR matrix-vector kernels on CPU and CUDA
_CSR_DTYPES = (torch.float32, torch.float64)


def _fast_path_ok(x: torch.Tensor) -> bool:
    """Whether ``x`` may take the fast (CSR) path: a plain 1-D or 2-D dense CPU/CUDA tensor,
    outside every ``torch.func`` transform and ``torch.compile`` tracing, and not on CUDA
    when deterministic algorithms are requested (cuSPARSE's default SpMV may reorder sums)."""
    return (
        type(x) in (torch.Tensor, torch.nn.Parameter)
        and x.dim() in (1, 2)
        and x.numel() > 0
        and x.layout == torch.strided
        and x.dtype in _CSR_DTYPES
        and (x.device.type == "cpu"
             or (x.device.type == "cuda" and not torch.are_deterministic_algorithms_enabled()))
        and not torch._C._are_functorch_transforms_active()
        and not torch._C._functorch.is_functorch_wrapped_tensor(x)
        and not torch.compiler.is_compiling()
    )


class _FixedLinear(torch.autograd.Function):
    """``P x`` (or ``P^T x``) through a projection's fast kernels, for plain autograd.

    ``proj._fast_product(x, transposed)`` computes the product (sparse: one CSR product).
    The backward is the product with the transposed map, dispatched again through
    ``proj._linear``: under ``create_graph`` it records this Function again (double backward
    works), and when autograd runs batched (``is_grads_batched``, i.e. under ``vmap``) it
    falls back to the functional form. ``jvp`` (forward-mode AD on dual tensors) is the same
    product applied to the tangent.
    """

    @staticmethod
    def forward(ctx, x, proj, transposed):
        ctx.proj, ctx.transposed = proj, transposed
        return proj._fast_product(x, transposed)

    @staticmethod
    def backward(ctx, grad_out):
        return ctx.proj._linear(grad_out, not ctx.transposed), None, None

    @staticmethod
    def jvp(ctx, x_t, _proj_t, _transposed_t):
        return ctx.proj._linear(x_t, ctx.transposed)


class _FixedMap(Projection):
    """A fixed map with two code paths: on plain 1-D/2-D tensors the autograd Function
    :class:`_FixedLinear` through the subclass's fast kernels (``_fast_product``; its
    backward is the adjoint map, nothing large is saved), under ``torch.func`` transforms
    the subclass's functional ops (``_functional``), differentiated by the transforms."""

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        """Return ``P @ theta``: shape ``(..., d)`` -> ``(..., D)``."""
        self._check_input(theta, self.d, "theta")
        return self._linear(theta, transposed=False)

    def transpose(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``P^T @ v`` (the exact adjoint of ``forward``): ``(..., D)`` -> ``(..., d)``."""
        self._check_input(v, self.D, "v")
        return self._linear(v, transposed=True)

    def _linear(self, x: torch.Tensor, transposed: bool) -> torch.Tensor:
        if _fast_path_ok(x):
            return _FixedLinear.apply(x, self, transposed)
        return self._functional(x, transposed)


#: public name: the contraction engine builds its CSR blocks with it
to_csr = _to_csr
