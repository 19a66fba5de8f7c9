"""Base class and shared helpers for fixed random projections ``P: R^d -> R^D``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._rng import MAX_SEED, torch_generator
from .._validation import is_int

#: ``to_dense`` refuses to build matrices with more elements than this.
DENSE_ELEMENT_LIMIT = 50_000_000
#: Work buffers in chunked helpers (``gram``, ``column_norms``...) hold about this many elements.
_CHUNK_ELEMENTS = 1 << 23


def _caller_level() -> int:
    """``stacklevel`` for a warning issued by the calling function that points at the first
    frame outside goldisk and torch (the user's line), however deep the call came in."""
    inside = tuple(str(p) + os.sep for p in (Path(__file__).resolve().parents[1],
                                                 Path(torch.__file__).parent))
    level, frame = 2, sys._getframe(2)  # level 2 = the caller of the warning function
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        level, frame = level + 1, frame.f_back
    return level


def _check_D(D) -> int:
    if not is_int(D):
        raise ValueError(f"D must be an int >= 1, got {D!r}")
    D = int(D)
    if D < 1:
        raise ValueError(f"D must be an int >= 1, got D={D}")
    return D


def _check_d(d, D: int) -> int:
    if not is_int(d):
        raise ValueError(f"d must be an int in [1, D={D}], got {d!r}")
    d = int(d)
    if not 1 <= d <= D:
        raise ValueError(f"d must be an int in [1, D={D}], got d={d}")
    return d


def _check_dtype(dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


def _check_metric(metric, D: int) -> torch.Tensor | None:
    """Validate ``metric`` and return it as a float64 CPU tensor of shape ``(D,)`` (or None)."""
    if metric is None:
        return None
    try:
        if torch.is_tensor(metric):
            m = metric.detach().cpu()
        else:
            m = torch.as_tensor(np.asarray(metric))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"metric must be a 1-D array of length D={D}: {exc}") from exc
    if m.dim() != 1 or m.shape[0] != D:
        raise ValueError(f"metric must be a 1-D array of length D={D}, got shape {tuple(m.shape)}")
    if m.dtype.is_complex or m.dtype == torch.bool:
        raise ValueError(f"metric must be real-valued, got dtype {m.dtype}")
    m = m.to(torch.float64).clone()
    if not bool(torch.isfinite(m).all()) or not bool((m > 0).all()):
        raise ValueError("metric entries must all be finite and > 0")
    return m


def as_torch_generator(random_state=None) -> torch.Generator:
    """Turn a scikit-learn style ``random_state`` into a CPU :class:`torch.Generator`.

    Thin wrapper around :func:`goldisk._rng.torch_generator` that always returns a CPU
    generator (projections are built on CPU, then moved).

    Parameters
    ----------
    random_state : None, int, numpy.random.Generator, numpy.random.RandomState or torch.Generator
        ``None`` draws a fresh non-deterministic seed; an int ``s`` gives
        ``torch.Generator().manual_seed(s)``; numpy generators are asked for one int seed (so
        they advance); a CPU ``torch.Generator`` is returned as is (and is consumed by the
        caller); a generator on another device is asked for a seed.

    Returns
    -------
    torch.Generator
        A CPU generator. torch's global RNG is never used.

    Examples
    --------
    >>> g1, g2 = as_torch_generator(3), as_torch_generator(3)
    >>> bool(torch.equal(torch.rand(2, generator=g1), torch.rand(2, generator=g2)))
    True
    """
    if isinstance(random_state, torch.Generator) and random_state.device.type != "cpu":
        seed = torch.randint(0, MAX_SEED, (1,), generator=random_state, device=random_state.device)
        random_state = int(seed.cpu()[0])
    return torch_generator(random_state, device="cpu")


class Projection(nn.Module):
    """A fixed linear map ``P: R^d -> R^D`` (abstract base class).

    Subclasses keep all their (random) state in registered buffers and have no parameters, so
    ``.to(device)``, ``.double()``, ``state_dict``, ``copy.deepcopy`` and ``pickle`` all work.
    ``forward`` and ``transpose`` are pure functions of their input built from differentiable
    out-of-place torch ops, usable under ``torch.func.vmap``, ``jvp``, ``grad``, ``jacrev`` and
    ``jacfwd`` (including forward-over-reverse Hessians).

    Attributes
    ----------
    D : int
        Output (full parameter-space) dimension.
    d : int
        Input (subspace) dimension.
    kind : str
        Short name of the construction (``"dense"``, ``"sparse"``, ``"fastfood"``...).
    """

    kind = "abstract"

    def __init__(self, D: int, d: int):
        super().__init__()
        self.D = int(D)
        self.d = int(d)

    @classmethod
    def _unchecked(cls, *args, **kwargs):
        """An instance from arguments already validated (D, d, dtype, metric, as
        :func:`make_projection` checks them at its entry): a subclass's ``__init__`` checks
        its arguments, then calls ``_build(*args)``, which this calls directly."""
        obj = cls.__new__(cls)
        obj._build(*args, **kwargs)
        return obj

    # ------------------------------------------------------------------ abstract interface
    def forward(self, theta: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Map ``theta`` of shape ``(..., d)`` to ``P @ theta`` of shape ``(..., D)``."""
        raise NotImplementedError

    def transpose(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Map ``v`` of shape ``(..., D)`` to ``P^T @ v`` of shape ``(..., d)``."""
        raise NotImplementedError

    def columns(self, start: int, stop: int) -> torch.Tensor:
        """Columns ``start..stop`` of ``P`` as the rows of a ``(stop - start, D)`` tensor.

        ``forward`` of the matching rows of the identity by default; subclasses that store
        ``P`` return a copy of the stored columns.
        """
        self._check_columns(start, stop)
        E = torch.zeros(stop - start, self.d, dtype=self.dtype, device=self.device)
        E[torch.arange(stop - start), torch.arange(start, stop)] = 1
        return self.forward(E)

    # ------------------------------------------------------------------ helpers
    def _check_columns(self, start: int, stop: int) -> None:
        if not 0 <= start < stop <= self.d:
            raise ValueError(f"columns needs 0 <= start < stop <= d={self.d}, got {start}, {stop}")

    def _check_input(self, x: torch.Tensor, n: int, name: str) -> None:
        if not torch.is_tensor(x):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != n:
            raise ValueError(
                f"{name} must have shape (..., {n}) for {type(self).__name__}"
                f"(D={self.D}, d={self.d}), got {tuple(x.shape)}"
            )
        if x.dtype != self.dtype:
            fix = (f"cast one of them (e.g. projection.to({x.dtype}))" if x.is_floating_point()
                   else f"cast {name} with {name}.to({self.dtype})")
            raise TypeError(
                f"{name} has dtype {x.dtype} but the projection buffers are {self.dtype}; {fix}"
            )

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the buffers (and of ``forward``'s output)."""
        for b in self.buffers():
            if b.is_floating_point():
                return b.dtype
        return torch.get_default_dtype()  # pragma: no cover - every subclass has one

    @property
    def device(self) -> torch.device:
        """Device of the buffers."""
        for b in self.buffers():
            return b.device
        return torch.device("cpu")  # pragma: no cover

    @property
    def nnz(self) -> int | None:
        """Number of stored non-zero entries (``None`` when the matrix is never stored)."""
        return None

    @property
    def memory_bytes(self) -> int:
        """Total bytes held by the buffers."""
        return int(sum(b.numel() * b.element_size() for b in self.buffers()))

    def _work_len(self) -> int:
        """Length of the largest per-vector intermediate in ``forward``/``transpose``."""
        return self.D

    def _chunk(self, chunk_size: int | None) -> int:
        if chunk_size is None:
            chunk_size = _CHUNK_ELEMENTS // max(1, self._work_len())
        return int(max(1, min(self.d, chunk_size)))

    def _eye_chunks(self, chunk_size: int | None):
        """Yield ``(start, E)`` with ``E`` rows ``start..`` of the ``d x d`` identity."""
        c = self._chunk(chunk_size)
        for start in range(0, self.d, c):
            stop = min(self.d, start + c)
            E = torch.zeros(stop - start, self.d, dtype=self.dtype, device=self.device)
            E[torch.arange(stop - start), torch.arange(start, stop)] = 1
            yield start, E

    @torch.no_grad()
    def to_dense(self) -> torch.Tensor:
        """Return the explicit ``D x d`` matrix (for inspection and tests).

        Raises
        ------
        ValueError
            If ``D*d`` exceeds ``5e7`` elements.
        """
        self._check_dense_size()
        cols = [self.forward(E) for _, E in self._eye_chunks(None)]
        return torch.cat(cols, dim=0).T.contiguous()

    def _check_dense_size(self) -> None:
        if self.D * self.d > DENSE_ELEMENT_LIMIT:
            raise ValueError(
                f"to_dense would materialise D*d = {self.D}*{self.d} = {self.D * self.d} "
                f"elements (limit {DENSE_ELEMENT_LIMIT:.0e})"
            )

    @torch.no_grad()
    def column_norms(self) -> torch.Tensor:
        """Euclidean norms of the ``d`` columns of ``P`` (all 1 by construction)."""
        # accumulated in float64: a float32 sum over D ~ 1e7 entries is off by ~1e-3
        out = [torch.linalg.vector_norm(P, dim=-1, dtype=torch.float64).to(P.dtype)
               for P in (self.forward(E) for _, E in self._eye_chunks(None))]
        return torch.cat(out)

    @torch.no_grad()
    def gram(self, chunk_size: int | None = None) -> torch.Tensor:
        """Return ``P^T P`` (``d x d``), computed as ``transpose(forward(I_d))`` in row chunks."""
        rows = [self.transpose(self.forward(E)) for _, E in self._eye_chunks(chunk_size)]
        return torch.cat(rows, dim=0)

    # ------------------------------------------------------------------ serialisation
    #: Persistent buffers that may be ``None`` (absent from ``state_dict``).
    _optional_buffers: tuple[str, ...] = ()
    #: Lazily built caches kept in ``__dict__`` (outside ``state_dict``): dropped by
    #: ``.to()`` / ``.double()`` (``_apply``) and when pickled, rebuilt on first use.
    _caches: tuple[str, ...] = ()

    def _apply(self, fn, recurse=True):
        before = [id(b) for b in self.buffers()]
        out = super()._apply(fn, recurse)
        if [id(b) for b in self.buffers()] != before:  # a real move or cast: free the caches
            for name in self._caches:  # (a no-op .to() keeps them: they are still valid)
                self.__dict__.pop(name, None)
        return out

    def __getstate__(self):
        state = super().__getstate__()
        for name in self._caches:
            state.pop(name, None)
        return state

    def _config(self) -> dict:
        """Non-tensor settings saved in ``state_dict`` (``_extra_state``) besides D, d, kind."""
        return {}

    def get_extra_state(self) -> dict:
        return {"kind": self.kind, "D": self.D, "d": self.d, **self._config()}

    def _check_state(self, state: dict) -> None:
        theirs = (state.get("kind"), state.get("D"), state.get("d"))
        if theirs != (self.kind, self.D, self.d):
            raise ValueError(
                f"state_dict is for (kind, D, d) = {theirs}, this projection is "
                f"{(self.kind, self.D, self.d)}"
            )

    def set_extra_state(self, state: dict) -> None:
        self._check_state(state)
        for key, value in state.items():
            if key not in ("kind", "D", "d"):
                setattr(self, key, value)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Buffers whose size depends on the random draw (e.g. the sparse COO arrays) or that are
        # optional (a metric) are re-allocated to the incoming shape before the copy, so a state
        # dict loads into any projection of the same kind, D and d (whatever its seed).
        extra = state_dict.get(prefix + "_extra_state")
        if isinstance(extra, dict):
            self._check_state(extra)
        for name, buf in list(self._buffers.items()):
            if name in self._non_persistent_buffers_set:
                continue
            src = state_dict.get(prefix + name)
            if src is None:
                if name in self._optional_buffers:
                    self._buffers[name] = None
                continue
            if buf is None or buf.shape != src.shape:
                if buf is not None:
                    dtype = buf.dtype
                else:
                    dtype = self.dtype if src.is_floating_point() else src.dtype
                self._buffers[name] = torch.empty(src.shape, dtype=dtype, device=self.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _extra(self) -> str:
        return ""

    def extra_repr(self) -> str:
        s = f"D={self.D}, d={self.d}, kind={self.kind!r}"
        extra = self._extra()
        return f"{s}, {extra}" if extra else s
