"""Spectral density of the full-space Hessian (or Gauss-Newton matrix) by stochastic
Lanczos quadrature (SLQ; Golub & Meurant 2010, Ghorbani, Krishnan & Xiao 2019).

For a random unit vector ``v`` (Rademacher / sqrt(D)), ``n_steps`` Lanczos steps give the
tridiagonal ``T = S diag(theta) S^T``; the Gauss quadrature ``sum_i tau_i f(theta_i)``
with ``tau_i = S_{0i}^2`` equals ``v^T f(M) v`` exactly for polynomials ``f`` of degree
up to ``2 n_steps - 1``, and ``E[v^T f(M) v] = Tr f(M) / D``. Averaged over probes, the
nodes and weights are a discrete spectral measure with the moments of the spectrum
(``sum tau theta = v^T M v``, so its mean is Hutchinson's ``Tr(M) / D``); a Gaussian of
width ``sigma`` on each node makes it a density that integrates to 1.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd
import torch

from .._rng import torch_generator
from ._lanczos import _orthogonalize
from ._operator import CurvatureOperator

__all__ = ["spectral_density", "slq_nodes", "smooth_density", "plot_spectral_density"]


def slq_nodes(matvec, D, n_probes, n_steps, gen, dtype, device):
    """Quadrature nodes and weights ``(n_probes, m)`` (``m = min(n_steps, D)``; a probe
    whose Krylov space closes early pads with zero weights)."""
    m = int(min(n_steps, D))
    nodes = np.zeros((n_probes, m))
    weights = np.zeros((n_probes, m))
    for p in range(n_probes):
        v = (torch.randint(0, 2, (D,), generator=gen) * 2 - 1).to(device, dtype)
        V = torch.zeros(m, D, dtype=dtype, device=device)
        V[0] = v / math.sqrt(D)
        alpha, beta = [], []
        for j in range(m):
            w, h = _orthogonalize(V[: j + 1], matvec(V[j]))
            alpha.append(float(h[j]))
            b = float(w.norm())
            scale = max(abs(a) for a in alpha) or 1.0
            if j + 1 == m or b <= 1e3 * torch.finfo(dtype).eps * scale:
                break  # (an invariant subspace: the quadrature is exact already)
            beta.append(b)
            V[j + 1] = w / b
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, S = np.linalg.eigh(T)
        nodes[p, : len(theta)] = theta
        weights[p, : len(theta)] = S[0] ** 2
    return nodes, weights


def spectral_density(
    model,
    X,
    y,
    *,
    operator: str = "hessian",
    n_probes: int = 10,
    n_steps: int = 80,
    sigma: float | None = None,
    n_points: int = 1000,
    parameters=None,
    loss: str = "cross_entropy",
    batch_size: int = 512,
    random_state=None,
    dtype=torch.float64,
    device=None,
) -> pd.DataFrame:
    """Smoothed eigenvalue density of the full-space Hessian (or Gauss-Newton matrix).

    Parameters
    ----------
    model, X, y :
        The network (logits) and the whole dataset.
    operator : {"hessian", "ggn"}
    n_probes : int, default=10
        Random starting vectors; the density is their average (``n_probes * n_steps``
        products in all).
    n_steps : int, default=80
        Lanczos steps per probe (PyHessian's default ``iter=100`` is of the same order).
        The quadrature reproduces the spectrum's moments up to degree ``2 n_steps - 1``.
    sigma : float, optional
        Width of the Gaussian on each node; default 1% of the range of the nodes (a
        density then resolves the bulk and the outliers of an MLP at init).
    n_points : int, default=1000
        Grid points, spanning the nodes +- 5 sigma.
    parameters : str or list of str, optional
        The density of the diagonal block of these parameters (names or module prefixes).
    random_state : None, int, Generator
        Seeds the probes.

    Returns
    -------
    pandas.DataFrame with columns ``eigenvalue`` (grid) and ``density`` (integrating to 1,
    trapezoid rule); ``attrs`` holds ``nodes`` and ``weights`` (``(n_probes, m)``: the
    discrete spectral measure of each probe), ``sigma``, ``n_matvecs`` and ``D``.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    >>> X = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    >>> df = spectral_density(net, X, torch.arange(30) % 3, n_probes=2, n_steps=10,
    ...                       random_state=0)
    >>> list(df.columns), round(float(np.trapezoid(df["density"], df["eigenvalue"])), 6)
    (['eigenvalue', 'density'], 1.0)
    """
    for name, value in (("n_probes", n_probes), ("n_steps", n_steps), ("n_points", n_points)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    if n_points < 2:
        raise ValueError(f"n_points must be an int >= 2, got {n_points!r}.")
    if sigma is not None and (not isinstance(sigma, numbers.Real)
                              or not (sigma > 0 and math.isfinite(sigma))):
        raise ValueError(f"sigma must be None or a positive float, got {sigma!r}.")
    op = CurvatureOperator(model, X, y, operator=operator, loss=loss, batch_size=batch_size,
                           dtype=dtype, device=device, parameters=parameters)
    nodes, weights = slq_nodes(op.matmat, op.D, int(n_probes), int(n_steps),
                               torch_generator(random_state), op.dtype, op.device)
    df = smooth_density(nodes, weights, sigma, n_points)
    df.attrs.update(n_matvecs=op.n_matvecs, D=op.D)
    return df


def smooth_density(nodes, weights, sigma=None, n_points=1000) -> pd.DataFrame:
    """The density of a discrete spectral measure (rows of ``nodes`` / ``weights``, each
    row a probe whose weights sum to 1) with a Gaussian of width ``sigma`` on each node
    (default: 1% of the nodes' range), on ``n_points`` spanning the nodes +- 5 sigma."""
    nodes, weights = np.atleast_2d(nodes), np.atleast_2d(weights)
    used = weights > 0
    lo, hi = float(nodes[used].min()), float(nodes[used].max())
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 1e-3
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, int(n_points))
    dens = np.zeros_like(grid)
    for t, w in zip(nodes[used], weights[used], strict=True):
        dens += w * np.exp(-0.5 * ((grid - t) / sigma) ** 2)
    dens /= len(nodes) * sigma * math.sqrt(2 * math.pi)
    # the Gaussians' tails beyond +-5 sigma (6e-7) and the trapezoid rule's error: the
    # grid's integral is made exactly 1
    dens /= np.trapezoid(dens, grid)
    df = pd.DataFrame({"eigenvalue": grid, "density": dens})
    df.attrs.update(nodes=nodes, weights=weights, sigma=float(sigma))
    return df


def plot_spectral_density(df: pd.DataFrame, ax=None, *, log: bool = True, label=None):
    """Plot a :func:`spectral_density` (log density by default, as the outliers of a
    network's Hessian are orders of magnitude rarer than its bulk); returns the axes."""
    if not {"eigenvalue", "density"} <= set(df.columns):
        raise ValueError("df must have columns 'eigenvalue' and 'density' (the output of "
                         "spectral_density).")
    if ax is None:
        from .._mpl import pyplot_free

        _, ax = pyplot_free().subplots(figsize=(5, 3.5))
    dens = df["density"].to_numpy()
    if log:
        floor = max(dens.max() * 1e-8, np.finfo(float).tiny)
        ax.semilogy(df["eigenvalue"], np.maximum(dens, floor), label=label)
    else:
        ax.plot(df["eigenvalue"], dens, label=label)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    return ax
