"""Fastfood projection (Le et al. 2013, as used by Li et al. 2018) with exact unit columns."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._base import _check_D, _check_d, _check_dtype, _check_metric, as_torch_generator
from ._common import _cache_valid, _CSRMatrix, _FixedMap, _note_uncached, _version

#: The Walsh-Hadamard transform is applied as a Kronecker product of ``2**_BLOCK_LOG2``-sized
#: Sylvester blocks (one small matmul per factor), which is several times faster on CPU than
#: ``log2(L)`` radix-2 butterfly stages.
_BLOCK_LOG2 = 6
#: Block used on CPU, where 32 beats 64: fewer flops for as many passes at L >= 2^14
#: (docs/performance.md, "Design notes").
_CPU_BLOCK = 32


def sylvester_hadamard(n: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Unnormalised Sylvester Hadamard matrix of order ``n`` (a power of two)."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"n must be a power of two, got {n}")
    H = torch.ones(1, 1, dtype=dtype, device=device)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


def fwht(x: torch.Tensor, H_block: torch.Tensor) -> torch.Tensor:
    """Unnormalised fast Walsh-Hadamard transform ``H_n x`` along the last axis.

    ``n = x.shape[-1]`` must be a power of two. ``H_n`` (Sylvester ordering) is the Kronecker
    product of Sylvester blocks of size at most ``H_block.shape[0]``; each factor is one
    broadcast matmul, so the cost is ``O(n log n)`` with ``O(n)`` memory per vector. Purely
    functional (reshape + matmul), hence safe under ``torch.func`` transforms.

    Examples
    --------
    >>> x = torch.tensor([1.0, 0.0, 0.0, 0.0])
    >>> fwht(x, sylvester_hadamard(2, dtype=x.dtype)).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    n = x.shape[-1]
    if n == 1:
        return x
    p = n.bit_length() - 1
    m = H_block.shape[0].bit_length() - 1
    sizes = [1 << m] * (p // m) + ([1 << (p % m)] if p % m else [])
    batch = x.shape[:-1]
    post = 1
    for f in sizes:
        Hf = H_block[:f, :f]  # the top-left block of a Sylvester matrix is a Sylvester matrix
        if post == 1:
            x = torch.matmul(x.reshape(*batch, n // f, f), Hf)
        else:
            x = torch.matmul(Hf, x.reshape(*batch, n // (f * post), f, post))
        post *= f
    return x.reshape(*batch, n)


class FastfoodProjection(_FixedMap):
    """Fastfood projection ``P = diag(metric) C_D H G Pi H B E_d diag(inv_norms)``.

    ``L`` is the smallest power of two ``>= D`` (hence ``>= d``); ``E_d`` zero-pads ``theta`` to
    length ``L``; ``B`` is a random ``+-1`` diagonal, ``H`` the unnormalised Walsh-Hadamard
    matrix of order ``L``, ``Pi`` a uniform random permutation (``(Pi y)_i = y[Pi[i]]``), ``G``
    a standard Gaussian diagonal and ``C_D`` keeps the first ``D`` rows. Li et al.'s ``S`` scaling
    is replaced by an exact per-column normalisation: the column norms are computed once at
    construction (chunked, ``O(d L log L)`` time, ``O(chunk * L)`` memory) and stored as
    ``inv_norms``, so every column has unit norm up to rounding.

    Internally the first ``H`` acts on a vector supported on the first ``Lq`` entries
    (``Lq`` = smallest power of two ``>= d``), so it is computed as an order-``Lq`` transform
    followed by tiling, which folds into the permutation gather. Buffers: ``B``, ``Pi``, ``G``
    (length ``L``), ``inv_norms`` (length ``d``), ``metric`` (length ``D`` or ``None``) and a
    small non-persistent Hadamard block; memory ``O(L)``, ``forward``/``transpose`` cost
    ``O(L log L)`` per vector. A ``D x d`` matrix is only built by :meth:`to_dense`.

    On plain (1-D or 2-D) tensors outside ``torch.func`` transforms, ``forward`` and
    ``transpose`` are an autograd Function whose backward is the adjoint map (no length-``L``
    intermediate is kept for backward), and the adjoint's "fold" of length ``L`` onto ``Lq``
    is a CSR product; ``Pi % Lq`` (on the first product) and that CSR matrix (on the first
    ``transpose``) are built for the buffers' device and dtype and cached outside
    ``state_dict`` (``O(L)`` memory). Under
    ``vmap``, ``jvp``, ``grad``, ``jacrev`` and ``jacfwd`` the same transforms run as
    functional ops; both agree up to rounding.

    Parameters
    ----------
    D, d, generator, dtype
        As :class:`DenseProjection`.
    metric : array-like of shape (D,), optional
        Positive row scales; the normalisation uses the norms of the columns of
        ``diag(metric) C_D H G Pi H B E_d``.
    device : torch.device or str, optional
        Where the projection lives. The random buffers are always drawn on the CPU (the same
        seed gives the same ``B``, ``Pi``, ``G`` on every device); the exact column norms,
        ``d`` transforms of length ``L`` in float64, are then computed on this device (on a
        GPU in seconds where the CPU needs minutes at ``L = 2**24``), so ``inv_norms`` may
        differ between devices in the last bits.

    Examples
    --------
    >>> import torch
    >>> P = FastfoodProjection(100, 3, generator=0)
    >>> P.L
    128
    >>> P(torch.ones(3, dtype=torch.float64)).shape
    torch.Size([100])
    >>> torch.allclose(P.column_norms(), torch.ones(3, dtype=torch.float64))
    True
    """

    kind = "fastfood"
    _caches = ("_ff_index", "_ff_fold")
    _optional_buffers = ("metric",)

    def __init__(self, D, d, generator=None, metric=None, dtype=torch.float64, device=None):
        D = _check_D(D)
        d = _check_d(d, D)
        dtype = _check_dtype(dtype)
        m = _check_metric(metric, D)
        self._build(D, d, generator, m, dtype, device)

    def _build(self, D, d, generator, m, dtype, device):
        """``__init__`` for arguments already checked (``make_projection``'s path)."""
        super().__init__(D, d)
        self.L = 1 << (D - 1).bit_length()
        self.Lq = 1 << (d - 1).bit_length()
        g = as_torch_generator(generator)
        f64 = torch.float64
        # drawn as float64 and shifted in place: the same numbers as an int64 draw, without
        # its two length-L temporaries
        B = torch.randint(0, 2, (self.L,), generator=g, dtype=f64).mul_(2).sub_(1)
        self.register_buffer("B", B)
        self.register_buffer("Pi", torch.randperm(self.L, generator=g))
        self.register_buffer("G", torch.randn(self.L, generator=g, dtype=f64))
        self.register_buffer("inv_norms", torch.ones(d, dtype=f64))
        self.register_buffer("metric", m)
        block = sylvester_hadamard(1 << min(_BLOCK_LOG2, self.L.bit_length() - 1), dtype=f64)
        self.register_buffer("_H", block, persistent=False)
        if device is not None:
            self.to(device)
        norms = self.column_norms()
        if not bool((norms > 0).all()):  # pragma: no cover - probability zero
            raise RuntimeError("FastfoodProjection drew an all-zero column; use another seed")
        self.inv_norms = 1.0 / norms
        self.to(dtype)

    def _work_len(self) -> int:
        return self.L

    # ------------------------------------------------------------------ the two code paths
    # (_FixedMap: the fast kernels on plain tensors, the functional ops under transforms)
    def _functional(self, x: torch.Tensor, transposed: bool) -> torch.Tensor:
        return self._transpose(x, fast=False) if transposed else self._forward(x)

    def _fast_product(self, x: torch.Tensor, transposed: bool) -> torch.Tensor:
        return self._transpose(x, fast=True) if transposed else self._forward(x, fast=True)

    def _block(self, x: torch.Tensor) -> torch.Tensor:
        return self._H if x.device.type == "cuda" else self._H[:_CPU_BLOCK, :_CPU_BLOCK]

    def _index(self) -> torch.Tensor:
        """``Pi % Lq`` (int32 when it fits: faster gathers, half the memory), built on first
        use, kept out of ``state_dict`` and rebuilt when ``Pi`` changes."""
        key = (self.Pi, _version(self.Pi))
        cache = self.__dict__.get("_ff_index")
        if not _cache_valid(cache, key):
            _note_uncached(self, key)
            with torch.no_grad(), torch.inference_mode(False):
                idx = self.Pi % self.Lq
                if self.L < 2**31 - 1:
                    idx = idx.to(torch.int32)
            cache = (key, idx)
            self.__dict__["_ff_index"] = cache
        return cache[1]

    def _fold(self):
        """The ``Lq x L`` CSR matrix of ``u -> (sum of G[i] u[i] over i with Pi[i] % Lq = k)_k``,
        the adjoint of "tile, permute, scale by G" (``None`` for dtypes or devices without
        CSR kernels). Only the fast ``transpose`` needs it, so it is built on its first call
        (not by the construction's column norms, which only run ``forward``) and rebuilt
        when ``Pi`` or ``G`` changes (not when ``inv_norms`` or ``B`` do)."""
        key = (self.Pi, self.G, _version(self.Pi), _version(self.G))
        cache = self.__dict__.get("_ff_fold")
        if not _cache_valid(cache, key):
            _note_uncached(self, key)
            fold = None
            if self.G.dtype in (torch.float32, torch.float64) and self.G.device.type in (
                "cpu", "cuda"
            ):
                with torch.no_grad(), torch.inference_mode(False):
                    fold = _CSRMatrix(self._index(), None, self.G, self.Lq, self.L)
            cache = (key, fold)
            self.__dict__["_ff_fold"] = cache
        return cache[1]

    def _forward(self, theta: torch.Tensor, fast: bool = False) -> torch.Tensor:
        H = self._block(theta)
        x = theta * (self.B[: self.d] * self.inv_norms)
        if self.Lq > self.d:
            x = F.pad(x, (0, self.Lq - self.d))
        x = fwht(x, H)  # = first Lq entries of H_L E_d x, which is Lq-periodic
        x = x.index_select(-1, self._index())  # tile to length L and permute
        x = x.mul_(self.G) if fast else x * self.G  # (in place: one length-L buffer less)
        x = fwht(x, H)
        if self.metric is not None:
            return x[..., : self.D] * self.metric
        return x[..., : self.D].contiguous() if self.L > self.D else x

    def _transpose(self, v: torch.Tensor, fast: bool) -> torch.Tensor:
        H = self._block(v)
        u = v * self.metric if self.metric is not None else v
        if self.L > self.D:
            u = F.pad(u, (0, self.L - self.D))
        u = fwht(u, H)
        fold = self._fold() if fast else None
        if fold is not None:
            z = fold(u)
        else:
            u = u * self.G
            z = u.new_zeros(u.shape[:-1] + (self.Lq,))
            idx = self._index().long().expand(u.shape)  # scatter needs int64
            z = z.scatter_add(-1, idx, u)
        z = fwht(z, H)[..., : self.d]
        return z * (self.B[: self.d] * self.inv_norms)

    def _extra(self) -> str:
        return f"L={self.L}, metric={'None' if self.metric is None else 'given'}"
