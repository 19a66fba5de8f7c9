"""Sparse random projections (Fort & Scherlis 2019; Li et al. 2018)."""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from ._base import (
    Projection,
    _caller_level,
    _check_D,
    _check_d,
    _check_dtype,
    _check_metric,
    as_torch_generator,
)


def _check_density(density, D: int) -> float | None:
    if density is None:
        return None
    if isinstance(density, str):
        if density.lower() == "li":
            return 1.0 / math.sqrt(D)
        raise ValueError(f"density must be None, 'li' or a float in (0, 1], got {density!r}")
    if isinstance(density, bool) or not isinstance(density, numbers.Real):
        raise ValueError(f"density must be None, 'li' or a float in (0, 1], got {density!r}")
    density = float(density)
    if not (0.0 < density <= 1.0):
        raise ValueError(f"density must be in (0, 1], got density={density}")
    return density


def _sample_positions(counts: torch.Tensor, D: int, g: torch.Generator):
    """Draw ``counts[j]`` distinct rows uniformly from ``range(D)`` for each column ``j``.

    Columns with ``2*counts[j] <= D`` use vectorised rejection sampling (draw with replacement,
    redraw the duplicates until none is left; every redraw is uniform, so each column's set is
    a uniform ``counts[j]``-subset); denser columns use ``randperm``. Cost ``O(nnz)`` expected.
    Returns ``rows, cols`` (int64), sorted by column then row.
    """
    d = counts.numel()
    cols = torch.repeat_interleave(torch.arange(d), counts)
    rows = torch.empty_like(cols)
    dense_col = 2 * counts > D
    sel = ~dense_col[cols]
    c = cols[sel]
    r = torch.randint(0, D, (c.numel(),), generator=g)
    while r.numel():
        sk, order = torch.sort(c * D + r, stable=True)
        dup_sorted = torch.zeros_like(sk, dtype=torch.bool)
        dup_sorted[1:] = sk[1:] == sk[:-1]
        n_dup = int(dup_sorted.sum())
        if n_dup == 0:
            break
        dup = torch.empty_like(dup_sorted)
        dup[order] = dup_sorted
        r[dup] = torch.randint(0, D, (n_dup,), generator=g)
    rows[sel] = r
    starts = torch.cumsum(counts, 0) - counts
    for j in torch.nonzero(dense_col).flatten().tolist():
        s, n = int(starts[j]), int(counts[j])
        rows[s : s + n] = torch.randperm(D, generator=g)[:n]
    order = torch.argsort(cols * D + rows)
    return rows[order], cols[order]


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
#: one SIMD-wide row update per non-zero; ``k`` = 32 bytes of the dtype (8 float32, 4 float64:
#: 2-3x faster than the plain product at D = 2e5, d = 1e3, on 2 cores). Used when the matrix
#: has at most ``_BLOCK_MAX_ROW_NNZ`` non-zeros per row on average.
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


class SparseProjection(Projection):
    """Sparse random projection with unit-norm columns, stored in COO form.

    Column ``j`` has ``n_j`` non-zeros at distinct uniformly random rows, each equal to
    ``+-1/sqrt(n_j)`` with equal probability, so every column has exactly unit norm and is never
    all-zero. Distinct columns are independent, hence nearly orthogonal when ``n_j << D``.

    * ``density=None`` (Fort & Scherlis 2019): ``n_j`` is uniform on
      ``{1, ..., ceil(sqrt(D))}``, so about ``d * sqrt(D) / 2`` non-zeros in total.
    * ``density=p`` in ``(0, 1]`` or ``"li"`` (``p = 1/sqrt(D)``, Li et al. 2018): every entry
      is non-zero with probability ``p``, i.e. ``n_j ~ Binomial(D, p)``, raised to 1 if 0.

    Buffers ``rows``, ``cols`` (int64) and ``vals`` (``dtype``), each of length ``nnz``; memory
    and time are ``O(nnz)``, a ``D x d`` matrix is never formed. On plain (1-D or 2-D) tensors
    outside ``torch.func`` transforms, ``forward`` and ``transpose`` are CSR sparse-dense
    products, differentiable any number of times; ``P`` and ``P^T`` in CSR form are built on
    first use for the buffers' device and dtype and cached outside ``state_dict`` (about as
    much memory again as the buffers). Under ``vmap``, ``jvp``, ``grad``, ``jacrev``,
    ``jacfwd``, or with more leading dimensions, they are a gather of the input followed by
    ``scatter_add``; both give the same result up to rounding.

    Parameters
    ----------
    D, d : int
        ``D >= 1`` and ``1 <= d <= D``.
    generator : None, int, numpy or torch generator, optional
        Source of randomness, see :func:`goldisk.projections.make_projection`.
    metric : array-like of shape (D,), optional
        Positive row scales, folded into ``vals``: ``diag(metric) P`` with columns renormalised.
    density : None, float or "li", optional
        See above.
    dtype : torch.dtype, default torch.float64

    Examples
    --------
    >>> import torch
    >>> P = SparseProjection(100, 3, generator=0)
    >>> P(torch.ones(3, dtype=torch.float64)).shape
    torch.Size([100])
    >>> torch.allclose(P.column_norms(), torch.ones(3, dtype=torch.float64))
    True
    """

    kind = "sparse"
    _caches = ("_csr_cache",)

    def __init__(self, D, d, generator=None, metric=None, density=None, dtype=torch.float64):
        D = _check_D(D)
        d = _check_d(d, D)
        dtype = _check_dtype(dtype)
        m = _check_metric(metric, D)
        density = _check_density(density, D)
        super().__init__(D, d)
        self.density = density
        g = as_torch_generator(generator)
        if self.density is None:
            counts = torch.randint(1, max(1, math.ceil(math.sqrt(D))) + 1, (d,), generator=g)
        else:
            counts = torch.binomial(
                torch.full((d,), float(D), dtype=torch.float64),
                torch.full((d,), self.density, dtype=torch.float64),
                generator=g,
            ).to(torch.int64)
        counts = counts.clamp(1, D)
        rows, cols = _sample_positions(counts, D, g)
        signs = torch.randint(0, 2, (rows.numel(),), generator=g).to(torch.float64) * 2 - 1
        vals = signs / torch.sqrt(counts.to(torch.float64))[cols]
        if m is not None:
            vals = vals * m[rows]
            sq = torch.zeros(d, dtype=torch.float64).index_add(0, cols, vals * vals)
            vals = vals / torch.sqrt(sq)[cols]
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)
        self.register_buffer("vals", vals.to(dtype))

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        """Return ``P @ theta``: shape ``(..., d)`` -> ``(..., D)``."""
        self._check_input(theta, self.d, "theta")
        return self._linear(theta, transposed=False)

    def transpose(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``P^T @ v``: shape ``(..., D)`` -> ``(..., d)``."""
        self._check_input(v, self.D, "v")
        return self._linear(v, transposed=True)

    # ------------------------------------------------------------------ the two code paths
    def _linear(self, x: torch.Tensor, transposed: bool) -> torch.Tensor:
        """``P x`` (or ``P^T x``): CSR product on plain tensors, gather/scatter otherwise."""
        if _fast_path_ok(x):
            return _FixedLinear.apply(x, self, transposed)
        return self._gather_scatter(x, transposed)

    def _fast_product(self, x: torch.Tensor, transposed: bool) -> torch.Tensor:
        return self._csr(transposed)(x)

    def _gather_scatter(self, x: torch.Tensor, transposed: bool) -> torch.Tensor:
        """Gather the non-zeros' inputs, scale, ``scatter_add`` into the output.

        Built from out-of-place ops with batching and forward-AD rules, so it works under
        every ``torch.func`` transform, with any number of leading dimensions.
        """
        src_idx, dst_idx, n_out = (
            (self.rows, self.cols, self.d) if transposed else (self.cols, self.rows, self.D)
        )
        src = x.index_select(-1, src_idx) * self.vals
        out = src.new_zeros(src.shape[:-1] + (n_out,))
        return out.scatter_add(-1, dst_idx.expand(src.shape), src)

    def _csr(self, transposed: bool) -> _CSRMatrix:
        """``P`` (``D x d``) or ``P^T`` in CSR form on the buffers' device and dtype.

        Built lazily from the COO buffers and cached outside ``state_dict``; the cache is
        keyed on the buffer objects and their version counters, so ``load_state_dict``
        (an in-place copy), ``.to()``, ``deepcopy`` and ``pickle`` never see a stale one.
        """
        key = (self.rows, self.cols, self.vals,
               _version(self.rows), _version(self.cols), _version(self.vals))
        cache = self.__dict__.get("_csr_cache")
        if not _cache_valid(cache, key):
            _note_uncached(self, key)
            with torch.no_grad(), torch.inference_mode(False):
                mats = (_CSRMatrix(self.rows, self.cols, self.vals, self.D, self.d),
                        _CSRMatrix(self.cols, self.rows, self.vals, self.d, self.D))
            cache = (key, mats)
            self.__dict__["_csr_cache"] = cache
        return cache[1][1 if transposed else 0]

    @property
    def nnz(self) -> int:
        """Number of stored non-zeros."""
        return int(self.vals.numel())

    @torch.no_grad()
    def columns(self, start: int, stop: int) -> torch.Tensor:
        """Columns ``start..stop`` as rows ``(stop - start, D)``, scattered from the COO
        buffers: ``O(nnz + (stop - start) D)``, and no CSR form of ``P`` is built for it."""
        self._check_columns(start, stop)
        sel = (self.cols >= start) & (self.cols < stop)
        V = torch.zeros(stop - start, self.D, dtype=self.vals.dtype, device=self.vals.device)
        return V.index_put_((self.cols[sel] - start, self.rows[sel]), self.vals[sel],
                            accumulate=True)

    @torch.no_grad()
    def to_dense(self) -> torch.Tensor:
        """Return the explicit ``D x d`` matrix, built directly from the COO buffers."""
        self._check_dense_size()
        M = torch.zeros(self.D, self.d, dtype=self.vals.dtype, device=self.vals.device)
        return M.index_put((self.rows, self.cols), self.vals, accumulate=True)

    @torch.no_grad()
    def column_norms(self) -> torch.Tensor:
        """Euclidean norms of the columns (segment sums over ``cols``, in float64)."""
        v = self.vals.double()
        sq = torch.zeros(self.d, dtype=torch.float64, device=v.device)
        return torch.sqrt(sq.index_add(0, self.cols, v * v)).to(self.vals.dtype)

    def _config(self) -> dict:
        return {"density": self.density}

    def _extra(self) -> str:
        return "density=None" if self.density is None else f"density={self.density:.4g}"
