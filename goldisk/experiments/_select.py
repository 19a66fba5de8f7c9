"""Selecting initializations by curvature or loss (Fort & Scherlis Fig. 6).

Many inits are drawn with the reference scheme and put exactly at the reference radius;
at each, the Hessian on one random hyperplane gives ``Tr(H)/||H||``, the fraction of
positive eigenvalues and ``Tr(H)``, and the validation loss is measured; then every init
is trained in full space for a few epochs with the *same* mini-batch order (common random
numbers), so differences in accuracy come from the init alone. :func:`selection_analysis`
fits accuracy at each epoch against each measure and tests whether selecting the best
quarter of inits by a measure trains faster than the rest.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._flat import ParamLayout
from .._radius import reference_radius
from .._rng import MAX_SEED, check_random_state
from ..curvature import hessian_statistics, subspace_hessian
from ..projections import make_projection
from ._protocol import Training, check_reference, protocol, units_of
from ._training import evaluate, point_at

__all__ = ["select", "selection_analysis", "measure_correlations", "SELECT_MEASURES",
           "SELECT_COLUMNS"]

#: measure -> +1 if a larger value is predicted to be better, -1 if smaller is better.
SELECT_MEASURES = {"trace_ratio": 1, "frac_positive": 1, "trace": 1, "init_loss": -1}

SELECT_COLUMNS = [
    "unit", "unit_rows", "init", "radius_ratio", "radius", "reference_radius", "dim",
    "trace", "frobenius", "trace_ratio", "frac_positive", "eig_min", "eig_max",
    "g_trace_ratio", "init_loss", "init_acc", "init_train_loss", "epoch", "step",
    "val_acc", "val_loss", "train_acc", "train_loss",
]


def select(
    model: nn.Module,
    X,
    y,
    X_val,
    y_val,
    *,
    n_inits: int = 60,
    dim: int = 50,
    ratio: float = 1.0,
    reference: str = "xavier",
    projection: str = "dense",
    hessian_samples: int | None = 500,
    training: Training | None = None,
    **settings,
) -> pd.DataFrame:
    """Curvature and loss at many inits, and their accuracy after each training epoch.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture; weights are redrawn with ``reference`` for every init.
    X, y, X_val, y_val : arrays
        Training data (the Hessian uses its first ``hessian_samples``) and validation
        data (initial loss, accuracy at every epoch).
    n_inits : int
    dim : int
        Dimension of the random hyperplane of each init's Hessian.
    ratio : float
        Radius of every init as a multiple of the reference radius (exact).
    training : Training, optional
        Full-space training (Fort: Adam, 1e-3; here 5 epochs by default); the same
        shuffling for every init. Its fields may also be passed as keywords.
    **settings
        ``optimizer``, ``lr``, ``epochs``, ``batch_size``, ``dtype``, ``device`` (see
        :class:`Training`) and ``random_state``, ``progress``, ``done``, ``on_result``
        (see :class:`RunHooks`).

    Returns
    -------
    pandas.DataFrame
        One row per (init, epoch) with the init's measures repeated on each row.

    Examples
    --------
    >>> from goldisk.models import MLP
    >>> from goldisk.datasets import make_circles3
    >>> ds = make_circles3(60)
    >>> df = select(MLP(2, (8,), 3), ds.X, ds.y, ds.X, ds.y, n_inits=2, dim=3, epochs=1,
    ...             progress=False)
    >>> df[["init", "epoch"]].values.tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1]]
    """
    training, hooks = protocol("select", training, settings, epochs=5)
    check_reference(reference)
    if int(n_inits) < 1:
        raise ValueError(f"n_inits must be >= 1, got {n_inits}.")
    D = ParamLayout(model).D
    if not 1 <= int(dim) <= D:
        raise ValueError(f"dim must be in [1, D={D}], got {dim}.")
    if not (ratio > 0 and math.isfinite(ratio)):
        raise ValueError(f"ratio must be finite and > 0, got {ratio}.")
    n_h = len(X) if hessian_samples is None else min(int(hessian_samples), len(X))
    r_ref = reference_radius(model, reference)
    rng = check_random_state(hooks.random_state)
    seeds = rng.integers(0, MAX_SEED, size=(int(n_inits), 2))
    shuffle_seed = int(rng.integers(0, MAX_SEED))
    units = units_of(hooks, range(int(n_inits)), "select", SELECT_COLUMNS)
    Xv = torch.as_tensor(X_val, dtype=torch.float64)
    yv = torch.as_tensor(y_val, dtype=torch.int64)
    for k in range(int(n_inits)):
        if not units.pending(k):
            continue
        net = point_at(model, reference, int(seeds[k, 0]), ratio=ratio, reference=reference)
        P = make_projection(projection, D, int(dim), random_state=int(seeds[k, 1]))
        res = subspace_hessian(net, X[:n_h], y[:n_h], P, device=training.device)
        stats = hessian_statistics(res.H)
        g_ratio = hessian_statistics(res.G)["trace_ratio"]
        start = evaluate(net.to(torch.float64), Xv, yv)
        meta = {"init": k, "radius_ratio": float(ratio), "radius": float(ratio) * r_ref,
                "reference_radius": r_ref, "dim": int(dim), **stats, "g_trace_ratio": g_ratio,
                "init_loss": start["loss"], "init_acc": start["accuracy"],
                "init_train_loss": float(res.loss)}
        hist = training.fit(net, X, y, X_val, y_val, random_state=shuffle_seed)
        rows = [{**meta, "epoch": int(round(h.epoch)), "step": int(h.step),
                 "val_acc": h.val_acc, "val_loss": h.val_loss, "train_acc": h.train_acc,
                 "train_loss": h.train_loss} for h in hist.itertuples()]
        units.finish(k, rows)
    return units.frame()


def _ols(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares slope of y on x with its standard error, 95% CI and p-value."""
    from scipy import stats

    n = len(x)
    if n < 3 or np.ptp(x) == 0:
        nan = math.nan
        return {"slope": nan, "slope_se": nan, "ci_low": nan, "ci_high": nan, "p_slope": nan,
                "pearson_r": nan}
    fit = stats.linregress(x, y)
    t = stats.t.ppf(0.975, n - 2)
    return {"slope": fit.slope, "slope_se": fit.stderr, "ci_low": fit.slope - t * fit.stderr,
            "ci_high": fit.slope + t * fit.stderr, "p_slope": fit.pvalue,
            "pearson_r": fit.rvalue}


def _permutation_p(a: np.ndarray, b: np.ndarray, n_perm: int, rng) -> float:
    """Two-sided permutation p-value of the difference of means (with the +1 correction)."""
    both = np.concatenate([a, b])
    obs = abs(a.mean() - b.mean())
    count = 0
    for _ in range(n_perm):
        perm = rng.permutation(both)
        count += abs(perm[: len(a)].mean() - perm[len(a):].mean()) >= obs - 1e-15
    return (count + 1) / (n_perm + 1)


def _welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's t-test p-value; NaN when both groups are constant (no variance to test)."""
    from scipy import stats

    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return math.nan
    with warnings.catch_warnings():  # near-identical values: scipy warns, p is still valid
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def selection_analysis(df: pd.DataFrame, measures=None, top: float = 0.25,
                       metric: str = "val_acc", n_permutations: int = 2000,
                       random_state=0) -> pd.DataFrame:
    """Does a measure at init predict training speed, and does selecting by it pay?

    For every epoch and measure: the least-squares slope of ``metric`` on the measure
    with its 95% confidence interval (t distribution), the p-value of a zero slope and
    Pearson's r; the slope per standard deviation of the measure (``slope_per_sd``, to
    compare measures); and the selection test: the best ``top`` fraction of inits by the
    measure (largest, or smallest for ``init_loss``) against the rest: difference of
    mean ``metric``, Welch's t-test p-value and a permutation p-value (numpy Generator).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> m = rng.normal(size=40)
    >>> df = pd.DataFrame({"init": range(40), "epoch": 1, "trace_ratio": m,
    ...                    "val_acc": 0.5 + 0.1 * m + 0.01 * rng.normal(size=40)})
    >>> out = selection_analysis(df, measures={"trace_ratio": 1}, n_permutations=99)
    >>> row = out.iloc[0]
    >>> bool(row["ci_low"] < 0.1 < row["ci_high"]), bool(row["p_welch"] < 1e-3)
    (True, True)
    """

    measures = SELECT_MEASURES if measures is None else dict(measures)
    if not 0 < top < 1:
        raise ValueError(f"top must be in (0, 1), got {top}.")
    rng = check_random_state(random_state)
    rows = []
    for epoch, grp in df.groupby("epoch"):
        grp = grp.sort_values("init")
        yv = grp[metric].to_numpy(float)
        for name, sign in measures.items():
            x = grp[name].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(yv)
            x, yy = x[ok], yv[ok]
            row = {"epoch": int(epoch), "measure": name, "n": int(ok.sum()), **_ols(x, yy)}
            row["slope_per_sd"] = row["slope"] * (x.std(ddof=1) if len(x) > 1 else math.nan)
            k = max(1, int(round(top * len(x))))
            if len(x) - k >= 2 and k >= 2:
                order = np.argsort(-sign * x, kind="stable")
                best, rest = yy[order[:k]], yy[order[k:]]
                row.update(
                    n_best=k, best_mean=best.mean(), rest_mean=rest.mean(),
                    diff=best.mean() - rest.mean(),
                    p_welch=_welch_p(best, rest),
                    p_perm=_permutation_p(best, rest, int(n_permutations), rng),
                )
            rows.append(row)
    return pd.DataFrame(rows)


def measure_correlations(df: pd.DataFrame, measures=None) -> pd.DataFrame:
    """Pearson and Spearman correlations (with p-values) between the measures at init."""
    from scipy import stats

    names = list(SELECT_MEASURES if measures is None else measures)
    inits = df.drop_duplicates("init")
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            x, y = inits[a].to_numpy(float), inits[b].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
                continue  # a correlation with a constant is undefined
            pr = stats.pearsonr(x[ok], y[ok])
            sr = stats.spearmanr(x[ok], y[ok])
            rows.append({"a": a, "b": b, "n": int(ok.sum()), "pearson_r": pr.statistic,
                         "pearson_p": pr.pvalue, "spearman_r": sr.statistic,
                         "spearman_p": sr.pvalue})
    return pd.DataFrame(rows)
