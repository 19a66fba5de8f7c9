"""Sparse random projections (Fort & Scherlis 2019; Li et al. 2018)."""

from __future__ import annotations

import math
import numbers

import torch

from ._base import (
    _check_D,
    _check_d,
    _check_dtype,
    _check_metric,
    as_torch_generator,
)
from ._common import _cache_valid, _CSRMatrix, _FixedMap, _note_uncached, _version


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


class SparseProjection(_FixedMap):
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
    D, d, generator, dtype
        As :class:`DenseProjection`.
    metric : array-like of shape (D,), optional
        Positive row scales, folded into ``vals``: ``diag(metric) P`` with columns renormalised.
    density : None, float or "li", optional
        See above.

    Examples
    --------
    >>> import torch
    >>> P = SparseProjection(100, 3, generator=0)
    >>> 3 <= P.vals.numel() <= 3 * 10  # 1 to sqrt(D) = 10 non-zeros a column
    True
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
        self._build(D, d, generator, m, density, dtype)

    def _build(self, D, d, generator, m, density, dtype):
        """``__init__`` for arguments already checked (``make_projection``'s path)."""
        density = _check_density(density, D)  # (make_projection passes only "li")
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

    # ------------------------------------------------------------------ the two code paths
    # (_FixedMap: the CSR product on plain tensors, gather/scatter otherwise)
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

    _functional = _gather_scatter

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
