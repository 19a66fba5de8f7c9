"""Stochastic trace of the full-space Hessian or Gauss-Newton matrix: Hutchinson, Hutch++,
XTrace, with standard errors, for the whole model or per layer.

All three spend ``n_matvecs`` operator products (each over the whole dataset, see
``goldisk.curvature._operator``) on Rademacher test vectors:

- ``hutchinson``: ``mean_i v_i^T M v_i``; standard error ``std / sqrt(m)``.
- ``hutch++`` (Meyer, Musco, Musco & Woodruff 2021): a third of the products sketch
  ``Q = orth(M S)``, a third give ``Tr(Q^T M Q)`` exactly, the last third run Hutchinson on
  ``(I - QQ^T) M (I - QQ^T)``; the standard error is that last Hutchinson's.
- ``xtrace`` (Epperly, Tropp & Webber 2024): half the products sketch ``Y = M W``, half
  give ``M Q``; each test vector ``w_i`` gives an unbiased estimate from the basis of the
  others (exchangeability), and the estimate is their mean; standard error ``std / sqrt(m/2)``.

Hutch++ and XTrace remove the top of the spectrum from the random part, so at equal
products they beat Hutchinson when a few eigenvalues dominate, and not on a flat spectrum
at small budgets (measured in docs/performance.md).
"""

from __future__ import annotations

import math
import numbers

import pandas as pd
import torch

from .._rng import torch_generator
from ._operator import CurvatureOperator, parameter_groups

__all__ = ["trace_estimate", "layer_curvature", "TRACE_METHODS"]

TRACE_METHODS = ("hutchinson", "hutch++", "xtrace")
_MIN_MATVECS = {"hutchinson": 1, "hutch++": 3, "xtrace": 2}


def _rademacher(m, D, gen, dtype, device):
    return (torch.randint(0, 2, (m, D), generator=gen) * 2 - 1).to(device, dtype)


def _se(samples: torch.Tensor) -> float:
    m = samples.numel()
    return float(samples.std(unbiased=True)) / math.sqrt(m) if m > 1 else float("nan")


def _hutchinson(matmat, D, m, gen, dtype, device):
    V = _rademacher(m, D, gen, dtype, device)
    per = (V * matmat(V)).sum(-1)
    return float(per.mean()), _se(per)


def _hutchpp(matmat, D, m, gen, dtype, device):
    n_sketch = m // 3
    n_rest = m - 2 * n_sketch
    S = _rademacher(n_sketch, D, gen, dtype, device)
    Q, _ = torch.linalg.qr(matmat(S).T)  # (D, s)
    exact = float((Q * matmat(Q.T).T).sum())
    G = _rademacher(n_rest, D, gen, dtype, device)
    Gp = G - (G @ Q) @ Q.T  # (I - QQ^T) g, rows
    MG = matmat(Gp)
    per = (Gp * MG).sum(-1)  # g^T (I-QQ^T) M (I-QQ^T) g
    return exact + float(per.mean()), _se(per)


def _xtrace(matmat, D, m, gen, dtype, device):
    n = m // 2
    W = _rademacher(n, D, gen, dtype, device).T  # (D, n)
    Y = matmat(W.T).T
    Q, R = torch.linalg.qr(Y)
    Z = matmat(Q.T).T  # M Q, (D, n)
    H = Q.T @ Z
    # S: columns of R^{-T}, normalized; Q_i Q_i^T = Q (I - s_i s_i^T) Q^T is the basis
    # without the i-th test vector
    S = torch.linalg.inv(R.T)
    S = S / S.norm(dim=0, keepdim=True)
    trace_q = torch.trace(H)
    per = trace_q - torch.einsum("ji,jk,ki->i", S, H, S)
    QW = Q.T @ W  # (n, n)
    for i in range(n):
        s = S[:, i]

        def deflate(v, s=s):
            return v - (s @ v) * s

        mpw = Y[:, i] - Z @ deflate(QW[:, i])
        ptmpw = mpw - Q @ deflate(Q.T @ mpw)
        per[i] = per[i] + W[:, i] @ ptmpw
    return float(per.mean()), _se(per)


_METHODS = {"hutchinson": _hutchinson, "hutch++": _hutchpp, "xtrace": _xtrace}


def _check_method(method, n_matvecs):
    if method not in TRACE_METHODS:
        raise ValueError(f"method must be one of {TRACE_METHODS}, got {method!r}.")
    if (isinstance(n_matvecs, bool) or not isinstance(n_matvecs, numbers.Integral)
            or n_matvecs < _MIN_MATVECS[method]):
        raise ValueError(f"n_matvecs must be an int >= {_MIN_MATVECS[method]} for "
                         f"method={method!r}, got {n_matvecs!r}.")


def estimate_on(op: CurvatureOperator, method, n_matvecs, gen) -> dict:
    """The trace of ``op`` by ``method``; an exact trace (``D`` unit products) when the
    budget reaches ``D``, where a stochastic estimate would only be worse."""
    start = op.n_matvecs
    if n_matvecs >= op.D:
        eye = torch.eye(op.D, dtype=op.dtype, device=op.device)
        tr = float(sum(torch.diagonal(op.matmat(eye[s:s + 256]), offset=s).sum()
                       for s in range(0, op.D, 256)))
        se = 0.0
    else:
        tr, se = _METHODS[method](op.matmat, op.D, int(n_matvecs), gen, op.dtype, op.device)
    return {"trace": tr, "trace_se": se, "n_matvecs": op.n_matvecs - start, "method": method}


def trace_estimate(
    model,
    X,
    y,
    *,
    operator: str = "hessian",
    method: str = "hutchinson",
    n_matvecs: int = 99,
    parameters=None,
    loss: str = "cross_entropy",
    batch_size: int = 512,
    random_state=None,
    dtype=torch.float64,
    device=None,
) -> dict:
    """Trace of the full-space Hessian (or Gauss-Newton matrix) with its standard error.

    Parameters
    ----------
    model, X, y :
        The network (logits) and the whole dataset.
    operator : {"hessian", "ggn"}
    method : {"hutchinson", "hutch++", "xtrace"}, default="hutchinson"
        See ``goldisk.curvature._trace``. Hutch++ and XTrace win when a few eigenvalues
        dominate (the Gauss-Newton matrix: 8x and 20x lower error than Hutchinson at 48
        products on a small MLP) but not on a flat, indefinite Hessian at small budgets
        (Hutch++ 1.4x worse at 24 products there); Hutchinson is the default as it is
        never far off (docs/performance.md).
    n_matvecs : int, default=99
        Operator products (each over the whole dataset). When it reaches ``D`` the
        exact trace is computed instead (``trace_se = 0``).
    parameters : str or list of str, optional
        The trace of the diagonal block of these parameters (names or module prefixes).
    random_state : None, int, Generator
        Seeds the Rademacher test vectors.

    Returns
    -------
    dict with ``trace``, ``trace_se``, ``n_matvecs`` and ``method``.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    >>> X = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    >>> est = trace_estimate(net, X, torch.arange(30) % 3, n_matvecs=12, random_state=0)
    >>> sorted(est), est["n_matvecs"]
    (['method', 'n_matvecs', 'trace', 'trace_se'], 12)
    """
    _check_method(method, n_matvecs)
    op = CurvatureOperator(model, X, y, operator=operator, loss=loss, batch_size=batch_size,
                           dtype=dtype, device=device, parameters=parameters)
    return estimate_on(op, method, n_matvecs, torch_generator(random_state))


def layer_curvature(
    model,
    X,
    y,
    *,
    operator: str = "hessian",
    method: str = "hutchinson",
    n_matvecs: int = 30,
    eigenvalues: bool = True,
    tol: float = 1e-6,
    loss: str = "cross_entropy",
    batch_size: int = 512,
    random_state=None,
    dtype=torch.float64,
    device=None,
) -> pd.DataFrame:
    """Per-layer curvature: trace (with standard error) and extreme eigenvalues of each
    layer's diagonal block of the Hessian (or Gauss-Newton matrix).

    Layers are the modules owning parameters (``"0.weight"`` and ``"0.bias"`` form layer
    ``"0"``). Each layer costs its own products over the dataset.

    Returns
    -------
    pandas.DataFrame, one row per layer: ``layer``, ``n_params``, ``trace``, ``trace_se``,
    ``n_matvecs`` and, with ``eigenvalues``, ``lambda_max`` and ``lambda_min``.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    >>> X = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    >>> df = layer_curvature(net, X, torch.arange(30) % 3, n_matvecs=9, random_state=0)
    >>> df["layer"].tolist(), df["n_params"].tolist()
    (['0', '2'], [30, 21])
    """
    from ._lanczos import _with_multiplicity

    _check_method(method, n_matvecs)
    full = CurvatureOperator(model, X, y, operator=operator, loss=loss,
                             batch_size=batch_size, dtype=dtype, device=device)
    gen = torch_generator(random_state)
    rows = []
    for layer, names in parameter_groups(full.layout).items():
        op = CurvatureOperator(model, X, y, operator=operator, loss=loss,
                               batch_size=batch_size, dtype=dtype, device=device,
                               parameters=names)
        row = {"layer": layer, "n_params": op.D, **estimate_on(op, method, n_matvecs, gen)}
        if eigenvalues:
            which = "both" if op.D >= 2 else "largest"
            theta, *_ = _with_multiplicity(op.matmat, op.D, 1, which, tol=tol, max_iter=1000,
                                           ncv=min(op.D, 40), generator=gen,
                                           dtype=op.dtype, device=op.device)
            row["lambda_max"], row["lambda_min"] = float(theta.max()), float(theta.min())
        row["n_matvecs"] = op.n_matvecs
        rows.append(row)
    return pd.DataFrame(rows)
