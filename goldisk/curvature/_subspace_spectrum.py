"""The full-space spectrum statistics for the exact ``d x d`` subspace Hessian: the same
answers (:func:`goldisk.top_eigenvalues`' array, :func:`goldisk.spectral_density`'s table)
from its eigenvalues, for :class:`~goldisk.CurvatureResult`."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from ._lanczos import WHICH
from ._spectrum import smooth_density

__all__ = ["result_eigenvalues", "result_top_eigenvalues", "result_spectral_density", "PARTS"]

PARTS = ("hessian", "ggn", "hterm")


def _matrix(result, operator):
    if operator not in PARTS:
        raise ValueError(f"operator must be one of {PARTS}, got {operator!r}.")
    M = {"hessian": result.H, "ggn": result.G, "hterm": result.Hterm}[operator]
    if M is None:
        raise ValueError(f"operator={operator!r} needs the Gauss-Newton part: compute the "
                         "result with gauss_newton=True.")
    return M


def result_eigenvalues(result, operator="hessian") -> np.ndarray:
    """All eigenvalues, descending, ``(..., d)`` (float64 ``eigvalsh``, symmetrized)."""
    M = _matrix(result, operator).detach().to("cpu", torch.float64)
    ev = torch.linalg.eigvalsh(0.5 * (M + M.transpose(-1, -2)))
    return ev.flip(-1).numpy()


def result_top_eigenvalues(result, k=1, operator="hessian", which="largest") -> np.ndarray:
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}.")
    ev = result_eigenvalues(result, operator)
    d = ev.shape[-1]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1 or \
            k > (d if which != "both" else d // 2):
        raise ValueError(f"k must be an int in 1..{d if which != 'both' else d // 2} for "
                         f"which={which!r} on a {d}-dimensional subspace, got {k!r}.")
    if which == "largest":
        return ev[..., :k].copy()
    if which == "smallest":
        return ev[..., d - k:].copy()
    return np.concatenate([ev[..., :k], ev[..., d - k:]], axis=-1)


def result_spectral_density(result, operator="hessian", sigma=None, n_points=1000):
    ev = result_eigenvalues(result, operator)
    if ev.ndim != 1:
        raise ValueError("spectral_density needs one point; this result holds "
                         f"{ev.shape[0]} (scales): take CurvatureResult(res.H[i], ...) "
                         "for one of them.")
    d = len(ev)
    return smooth_density(ev[None], np.full((1, d), 1.0 / d), sigma, n_points)
