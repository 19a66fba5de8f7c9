"""The identity "projection" (d = D), i.e. training in the full parameter space."""

from __future__ import annotations

import torch

from ._base import Projection, _check_D, _check_dtype


class IdentityProjection(Projection):
    """Identity map ``P = I_D`` with ``d = D`` (the full-space baseline).

    ``forward`` and ``transpose`` return a copy (``clone``) of their input, so callers may
    modify the result in place. There is no random state; a zero-size non-persistent buffer only
    records the dtype/device.

    Parameters
    ----------
    D : int
        Dimension, ``D >= 1``.
    dtype : torch.dtype, default torch.float64

    Examples
    --------
    >>> import torch
    >>> P = IdentityProjection(3)
    >>> P(torch.arange(3, dtype=torch.float64)).tolist()
    [0.0, 1.0, 2.0]
    """

    kind = "identity"

    def __init__(self, D, dtype=torch.float64):
        D = _check_D(D)
        dtype = _check_dtype(dtype)
        self._build(D, dtype)

    def _build(self, D, dtype):
        """``__init__`` for arguments already checked (``make_projection``'s path)."""
        super().__init__(D, D)
        self.register_buffer("_anchor", torch.empty(0, dtype=dtype), persistent=False)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        """Return a copy of ``theta`` (shape ``(..., D)``)."""
        self._check_input(theta, self.d, "theta")
        return theta.clone()

    def transpose(self, v: torch.Tensor) -> torch.Tensor:
        """Return a copy of ``v`` (shape ``(..., D)``)."""
        self._check_input(v, self.D, "v")
        return v.clone()

    @property
    def nnz(self) -> int:
        """``D`` (the diagonal)."""
        return self.D

    @torch.no_grad()
    def to_dense(self) -> torch.Tensor:
        """Return ``I_D``."""
        self._check_dense_size()
        return torch.eye(self.D, dtype=self.dtype, device=self.device)

    @torch.no_grad()
    def column_norms(self) -> torch.Tensor:
        """All ones."""
        return torch.ones(self.D, dtype=self.dtype, device=self.device)

    @torch.no_grad()
    def gram(self, chunk_size: int | None = None) -> torch.Tensor:
        """Return ``I_D``."""
        return torch.eye(self.D, dtype=self.dtype, device=self.device)
