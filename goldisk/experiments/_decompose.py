"""Deconstructing the Goldilocks zone (Vysogorets, Dawid & Kempe 2024).

Four parts, one table (column ``part``), for a (by default bias-free, homogeneous) net
initialized with Kaiming-normal weights scaled by one global ``alpha``:

``scale``
    Exact subspace Hessian ``H`` with its Gauss-Newton split ``G`` and H-term ``H - G``
    at every ``alpha`` (float64, one random init direction and subspace per repeat),
    with the model's loss, confidence, entropy and logit gradients there.
``temperature``
    The same at ``alpha = 1`` but with the logits divided by a softmax temperature
    ``T = alpha^-L``: for homogeneous nets the curvature statistics coincide with the
    ``scale`` part up to the overall factor ``alpha^2`` of the Hessian.
``inits``
    Many random inits at log-uniform ``alpha``: curvature against confidence, entropy,
    logit-gradient norm and initial loss.
``training``
    Full-batch gradient descent with learning rate ``lr0 / alpha^(L-2)`` and full-batch
    Adam from several ``alpha``: loss, accuracy and the fraction of zero logits over time.
"""

from __future__ import annotations

import math
import warnings

import pandas as pd
import torch
from torch import nn

from .._flat import ParamLayout, parameter_vector
from .._names import DECOMPOSE_PARTS
from .._radius import SoftmaxTemperature, reference_radius
from .._rng import MAX_SEED, check_random_state
from .._run import run_hooks
from ..curvature import (
    STATISTICS,
    hessian_statistics,
    logit_gradient,
    model_state,
    per_sample_loss,
    subspace_hessian,
)
from ..projections import make_projection
from ._protocol import units_of
from ._training import check_ratios, log_grid, point_at, train

__all__ = ["decompose", "DECOMPOSE_PARTS", "DECOMPOSE_COLUMNS", "model_depth", "spearman"]

#: Up to this many pairs the Spearman p-value is exact (all n! pairings, 8! = 40,320).
EXACT_SPEARMAN_N = 8


_STATE = ["loss", "accuracy", "confidence", "entropy", "logit_grad_norm", "zero_logit_frac",
          "mean_logit_grad_norm", "grad_norm"]
DECOMPOSE_COLUMNS = (
    ["unit", "unit_rows", "part", "repeat", "alpha", "log10_alpha", "temperature", "depth",
     "homogeneous", "radius", "reference_radius", "dim", "optimizer", "lr", "step",
     "train_loss", "train_acc", "val_loss", "val_acc", "diverged"]
    + [p + s for p in ("", "g_", "h_") for s in STATISTICS] + _STATE
)


def spearman(x, y) -> tuple[float, float]:
    """Spearman's ``rho`` (``scipy.stats.spearmanr``) and its two-sided p-value: exact (over
    all ``n!`` pairings of the ranks) for ``n <= 8``, scipy's t approximation above.

    At small ``n`` the approximation is far off: for ``n = 5`` and ``rho = 1`` it gives
    ``p ~ 1e-24`` where the exact value is ``2 / 5! = 0.0167``.

    Examples
    --------
    >>> rho, p = spearman([1, 2, 3, 4, 5], [2, 4, 5, 8, 9])
    >>> round(rho, 3), round(p, 4)
    (1.0, 0.0167)
    """
    import numpy as np
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    res = stats.spearmanr(x, y)
    if len(x) > EXACT_SPEARMAN_N:
        return float(res.statistic), float(res.pvalue)
    import itertools

    rx, ry = stats.rankdata(x), stats.rankdata(y)  # (mid-ranks for ties)
    perms = ry[np.array(list(itertools.permutations(range(len(ry)))))]  # every pairing
    a, b = rx - rx.mean(), perms - perms.mean(axis=1, keepdims=True)
    rhos = (b @ a) / np.sqrt((a @ a) * (b * b).sum(axis=1))
    observed = float(res.statistic)
    p = float(np.mean(np.abs(rhos) >= abs(observed) * (1 - 1e-12)))  # two-sided
    return observed, p


def model_depth(model: nn.Module) -> int:
    """``model.depth`` if defined, else the number of Linear/Conv layers."""
    depth = getattr(model, "depth", None)
    if depth is None:
        depth = sum(isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
                    for m in model.modules())
    return int(depth)


def _state(net: nn.Module, X, y, device) -> dict:
    """model_state plus the norm of the dataset-mean logit gradient and of the gradient."""
    out = model_state(net, X, y, device=device)
    Xt = torch.as_tensor(X, dtype=torch.float64, device=device)
    yt = torch.as_tensor(y, dtype=torch.int64, device=device)
    net = net.to(device=device, dtype=torch.float64)
    net.zero_grad(set_to_none=True)
    z = net(Xt)
    out["mean_logit_grad_norm"] = float(logit_gradient(z.detach(), yt).mean(0).norm())
    per_sample_loss(z, yt).mean().backward()
    out["grad_norm"] = float(
        torch.sqrt(sum(p.grad.pow(2).sum() for p in net.parameters() if p.grad is not None))
    )
    net.zero_grad(set_to_none=True)
    return out


def _curvature_rows(res, index: int | None) -> dict:
    H = res.H if index is None else res.H[index]
    G = res.G if index is None else res.G[index]
    with warnings.catch_warnings():  # ||G||_F = 0 once the softmax saturates: NaN ratio
        warnings.simplefilter("ignore", RuntimeWarning)
        return {**hessian_statistics(H), **hessian_statistics(G, "g_"),
                **hessian_statistics(H - G, "h_")}


def decompose(
    model: nn.Module,
    X,
    y,
    X_val,
    y_val,
    *,
    parts=DECOMPOSE_PARTS,
    alphas=None,
    dim: int = 50,
    n_subspaces: int = 3,
    scheme: str = "he",
    hessian_samples: int | None = None,
    n_inits: int = 60,
    init_alpha_range=(0.1, 10.0),
    init_dim: int = 20,
    train_alphas=None,
    optimizers=("gd", "adam"),
    gd_lr0: float = 0.1,
    adam_lr: float = 1e-3,
    steps: int = 300,
    records: int = 30,
    device=None,
    **hooks,
) -> pd.DataFrame:
    """Gauss-Newton decomposition, temperature, model state and trainability against alpha.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture; bias-free ReLU nets are homogeneous of degree ``L = depth``.
    X, y, X_val, y_val : arrays
        Training data (Hessians use its first ``hessian_samples``, all by default) and
        validation data (accuracy during training).
    parts : subset of {"scale", "temperature", "inits", "training"}
    alphas : sequence of float
        Global scales of the ``scheme`` init; default ``10^[-3..3]`` in steps of 0.25.
    dim, n_subspaces : int
        Subspace dimension and number of random (init, subspace) pairs (scale/temperature).
    n_inits, init_alpha_range, init_dim
        The ``inits`` part: inits at log-uniform ``alpha`` in the range.
    train_alphas : sequence of float
        Scales trained in the ``training`` part; default ``10^[-2..2]`` in steps of 0.5.
    optimizers : subset of {"gd", "adam"}
        Full-batch GD with ``gd_lr0 / alpha^(L-2)``, full-batch Adam with ``adam_lr``.
    steps, records : int
        Training steps, and number of records over them.
    device : torch.device or str, optional
    **hooks
        ``random_state``, ``progress``, ``done``, ``on_result``: see
        :class:`goldisk.experiments.RunHooks`.

    Returns
    -------
    pandas.DataFrame with a ``part`` column; see the module docstring.

    Examples
    --------
    >>> from goldisk.models import MLP
    >>> from goldisk.datasets import make_circles3
    >>> ds = make_circles3(60)
    >>> df = decompose(MLP(2, (8,), 3, bias=False), ds.X, ds.y, ds.X, ds.y, alphas=[1.0, 2.0],
    ...                dim=4, n_subspaces=1, n_inits=2, init_dim=3, train_alphas=[1.0],
    ...                steps=2, records=1, progress=False)
    >>> df.groupby("part").size().to_dict()
    {'inits': 2, 'scale': 2, 'temperature': 2, 'training': 4}
    """
    hooks = run_hooks("decompose", hooks)
    parts = list(parts)
    bad = [p for p in parts if p not in DECOMPOSE_PARTS]
    if bad or not parts:
        raise ValueError(f"parts must be a non-empty subset of {DECOMPOSE_PARTS}, got {parts}.")
    alphas = check_ratios(log_grid(-3, 3, 0.25) if alphas is None else alphas, "alphas")
    train_alphas = check_ratios(log_grid(-2, 2, 0.5) if train_alphas is None else train_alphas,
                                "train_alphas")
    optimizers = list(optimizers)
    if any(o not in ("gd", "adam") for o in optimizers):
        raise ValueError(f"optimizers must be a subset of ('gd', 'adam'), got {optimizers}.")
    lo, hi = (float(v) for v in init_alpha_range)
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"init_alpha_range must be 0 < lo <= hi, got {init_alpha_range}.")
    D = ParamLayout(model).D
    for name, d in (("dim", dim), ("init_dim", init_dim)):
        if not 1 <= int(d) <= D:
            raise ValueError(f"{name} must be in [1, D={D}], got {d}.")
    L = model_depth(model)
    homogeneous = bool(getattr(model, "homogeneous", False))
    r_ref = reference_radius(model, scheme)
    n_h = len(X) if hessian_samples is None else min(int(hessian_samples), len(X))
    Xh, yh = X[:n_h], y[:n_h]
    rng = check_random_state(hooks.random_state)
    sub_seeds = rng.integers(0, MAX_SEED, size=(int(n_subspaces), 2))
    init_seeds = rng.integers(0, MAX_SEED, size=(int(n_inits), 2))
    init_alphas = 10 ** rng.uniform(math.log10(lo), math.log10(hi), size=int(n_inits))
    train_seed = int(rng.integers(0, MAX_SEED))

    plan = []
    for part in parts:
        if part in ("scale", "temperature"):
            plan += [(part, s) for s in range(int(n_subspaces))]
        elif part == "inits":
            plan += [(part, k) for k in range(int(n_inits))]
        else:
            plan += [(part, f"{o}/{i}") for o in optimizers for i in range(len(train_alphas))]
    uid = "{}/{}".format
    units = units_of(hooks, [uid(*p) for p in plan], "decompose", DECOMPOSE_COLUMNS)
    base = {"depth": L, "homogeneous": homogeneous, "reference_radius": r_ref}
    for part, key in plan:
        if not units.pending(uid(part, key)):
            continue
        rows = []
        if part in ("scale", "temperature"):
            s = int(key)
            net = point_at(model, scheme, int(sub_seeds[s, 0]))
            P = make_projection("dense", D, int(dim), random_state=int(sub_seeds[s, 1]))
            w0 = parameter_vector(net).double()
            if part == "scale":
                res = subspace_hessian(net, Xh, yh, P, scales=alphas, device=device)
            for i, a in enumerate(alphas):
                a = float(a)
                if part == "scale":
                    curv = _curvature_rows(res, i)
                    probe = point_at(model, scheme, int(sub_seeds[s, 0]), scale=a)
                    temp = math.nan
                else:
                    temp = a ** (-L)
                    probe = SoftmaxTemperature(net, temp)
                    curv = _curvature_rows(subspace_hessian(probe, Xh, yh, P, device=device),
                                           None)
                rows.append({**base, "part": part, "repeat": s, "alpha": a,
                             "log10_alpha": math.log10(a), "temperature": temp,
                             "radius": a * float(w0.norm()), "dim": int(dim), **curv,
                             **_state(probe, Xh, yh, device)})
        elif part == "inits":
            k = int(key)
            a = float(init_alphas[k])
            net = point_at(model, scheme, int(init_seeds[k, 0]), scale=a)
            P = make_projection("dense", D, int(init_dim), random_state=int(init_seeds[k, 1]))
            curv = _curvature_rows(subspace_hessian(net, Xh, yh, P, device=device), None)
            rows.append({**base, "part": part, "repeat": k, "alpha": a,
                         "log10_alpha": math.log10(a),
                         "radius": float(parameter_vector(net).norm()),
                         "dim": int(init_dim), **curv, **_state(net, Xh, yh, device)})
        else:
            opt, i = key.split("/")
            a = float(train_alphas[int(i)])
            net = point_at(model, scheme, train_seed, scale=a)
            lr = gd_lr0 / a ** (L - 2) if opt == "gd" else adam_lr
            hist = train(net, X, y, X_val, y_val, optimizer=opt, lr=lr, epochs=int(steps),
                         batch_size=len(X), record_every=max(1, int(steps) // int(records)),
                         random_state=train_seed, device=device)
            for h in hist.to_dict("records"):
                rows.append({**base, "part": part, "repeat": 0, "alpha": a,
                             "log10_alpha": math.log10(a), "optimizer": opt, "lr": lr,
                             "step": h["step"], "train_loss": h["train_loss"],
                             "train_acc": h["train_acc"], "val_loss": h["val_loss"],
                             "val_acc": h["val_acc"], "radius": h["radius"],
                             "zero_logit_frac": h["zero_logit_frac"],
                             "confidence": h["confidence"],
                             "logit_grad_norm": h["logit_grad_norm"],
                             "diverged": h["diverged"]})
        units.finish(uid(part, key), rows)
    return units.frame()
