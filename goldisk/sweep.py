"""Fort & Scherlis's radius sweep: curvature on random hyperplanes at many radii.

One random init direction ``w0`` (drawn with the reference scheme) and one random
subspace ``P`` with ``max(dims)`` orthonormal columns are drawn per subspace index. The
point at radius ratio ``rho`` is ``rho * r_ref * w0 / ||w0||``. The Hessian on the first
``k`` columns of ``P`` is the leading ``k x k`` block of the Hessian on ``P``, so all
dimensions come from one computation per (subspace, radius).
"""

from __future__ import annotations

import copy
import hashlib
import math
import pickle
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_bool
from ._flat import ParamLayout, parameter_vector
from ._radius import REFERENCES, reference_radius
from ._rng import MAX_SEED, check_random_state
from ._run import run_hooks
from ._validation import TRANSFORMS_LOCK, is_int
from .curvature import batch_statistics, model_state, subspace_hessian, warn_statistics
from .models import init_weights_
from .projections import KINDS, as_projection, make_projection

#: Projection kinds a sweep draws its subspaces from (``make_projection``'s kinds but
#: ``identity``, which has no random subspace).
SWEEP_PROJECTIONS = tuple(k for k in KINDS if k != "identity")

__all__ = ["default_radii", "radius_sweep", "sweep_statistics", "plot_sweep"]


def default_radii(lo: float = -4.0, hi: float = 4.0, step: float = 1 / 3) -> np.ndarray:
    """Radius ratios ``r / r_ref`` on Fort's grid ``log10(r^2/r_ref^2) = lo..hi``."""
    n = int(round((hi - lo) / step)) + 1
    return 10.0 ** (np.linspace(lo, hi, n) / 2.0)


def sweep_statistics(res, dims, states: list[dict]) -> list[dict]:
    """Rows of curvature statistics (H, G, H-term) per point and nested dimension.

    ``res`` holds a stack of Hessians (n, d, d) and ``states`` one model-state dict per
    point; rows come point by point, then dimension by dimension.
    """
    H = res.H.reshape(-1, *res.H.shape[-2:])
    G = None if res.G is None else res.G.reshape(H.shape)
    n = H.shape[0]
    per_dim = {}
    for k in dims:
        stats = {k2: v for k2, v in batch_statistics(H[:, :k, :k]).items()}
        if G is not None:
            g, h = G[:, :k, :k], (H - G)[:, :k, :k]
            stats.update({"g_" + k2: v for k2, v in batch_statistics(g).items()})
            stats.update({"h_" + k2: v for k2, v in batch_statistics(h).items()})
        per_dim[k] = stats
    rows = []
    for j in range(n):
        for k in dims:
            row = {"dim": k, **{key: float(v[j]) for key, v in per_dim[k].items()}}
            for prefix in ("", "g_", "h_") if G is not None else ("",):
                warn_statistics(row, prefix)
            rows.append({**row, **states[j]})
    return rows


def _check_ratios(radii) -> np.ndarray:
    radii = np.asarray(default_radii() if radii is None else radii, dtype=float).ravel()
    if radii.size == 0 or not np.all(np.isfinite(radii)) or np.any(radii <= 0):
        raise ValueError("radii must be finite ratios r/r_ref > 0, e.g. radii=[0.5, 1, 2].")
    return radii


def _check_dims(dims, D: int) -> list[int]:
    dims = sorted({int(k) for k in dims})
    if not dims or dims[0] < 1 or dims[-1] > D:
        raise ValueError(f"dims must be integers in [1, D={D}], got {dims}.")
    return dims


def radius_sweep(
    model: nn.Module,
    X,
    y,
    *,
    radii=None,
    dims=(10, 50, 100),
    n_subspaces: int = 3,
    reference: str = "xavier",
    projection: str = "dense",
    kind: str = "hyperplane",
    loss: str = "cross_entropy",
    gauss_newton: bool = True,
    max_samples: int | None = 1000,
    batch_size: int = 512,
    dtype=torch.float64,
    device=None,
    n_jobs: int | None = None,
    radius_batch: int | None = None,
    **hooks,
) -> pd.DataFrame:
    """Curvature statistics on random subspaces at many radii (Fort & Scherlis, Fig. 3-5).

    Parameters
    ----------
    model : torch.nn.Module
        Architecture; its weights are redrawn with ``reference`` for every subspace.
    X, y : arrays
        Data; the first ``max_samples`` samples are used for the Hessian.
    radii : array of float, optional
        Ratios ``r / r_ref``; default Fort's grid ``log10(r^2/r_ref^2) = -4..4`` step 1/3.
    dims : sequence of int
        Subspace dimensions; nested, computed from one Hessian of size ``max(dims)``.
    n_subspaces : int
        Random (init direction, subspace) pairs per radius.
    reference : {"xavier", "he", "lecun", "default"}, default="xavier"
        Initialization scheme of the directions and of ``r_ref``.
    projection : {"dense", "sparse", "sparse-li", "fastfood", "auto"} or a D x d matrix, \
default="dense"
        A kind draws a projection per subspace; a ``D x d`` tensor or array (the user's
        own, columns used as they are: :func:`goldisk.projections.as_projection`) is the
        one subspace of every init direction, its first ``max(dims)`` columns used
        (``dims <= d``); rows then say ``projection="matrix"``.
    kind : {"hyperplane", "hypersphere"}, default="hyperplane"
    loss : {"cross_entropy", "mse"}, default="cross_entropy"
    gauss_newton : bool, default=True
        Also the Gauss-Newton part ``G`` and the H-term ``H - G`` (columns ``g_*``, ``h_*``).
    max_samples : int or None, default=1000
        Samples in the Hessian's mean loss (``None``: all of ``X``).
    batch_size : int, default=512
        Samples per mini-batch of the Hessian computation (memory, not the result).
    dtype : torch.dtype, default=torch.float64
    device : torch.device or str, optional
        Where the Hessians are computed (default: the CPU).
    n_jobs : int, optional
        Points computed in parallel through joblib (``None``: one process, or what an
        enclosing ``joblib.parallel_config`` says). Use
        ``joblib.parallel_config(backend="dask")`` or Ray's joblib backend to run the
        sweep on a cluster; the numbers do not depend on the backend.
    radius_batch : int, optional
        Radii of one subspace evaluated together in one vectorized call (and written
        together); default 1 on CPU and all radii on a GPU.
    **hooks
        ``random_state`` (seeds the init directions and the subspaces; default 0),
        ``progress`` (a bar over the (subspace, radius) units), ``done`` (a set of
        ``(subspace, radius_index)`` to skip) and ``on_result(rows)`` (called with each
        finished unit): see :class:`goldisk.experiments.RunHooks`.

    Returns
    -------
    pandas.DataFrame, one row per (subspace, radius, dim).

    Examples
    --------
    >>> from goldisk.models import MLP
    >>> from goldisk.datasets import load_digits
    >>> ds = load_digits()
    >>> df = radius_sweep(MLP(64, (16,), 10), ds.X, ds.y, radii=[0.1, 1.0], dims=(2, 4),
    ...                   n_subspaces=1, max_samples=100, progress=False)
    >>> df[["radius_ratio", "dim"]].values.tolist()
    [[0.1, 2.0], [0.1, 4.0], [1.0, 2.0], [1.0, 4.0]]
    """
    hooks = run_hooks("radius_sweep", hooks)
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}.")
    if isinstance(n_subspaces, bool | str) or int(n_subspaces) != n_subspaces \
            or int(n_subspaces) < 1:
        raise ValueError(f"n_subspaces must be an int >= 1, got {n_subspaces!r}.")
    progress = check_bool(hooks.progress, "progress")
    layout = ParamLayout(model)
    matrix = None
    if not isinstance(projection, str):  # the user's own D x d matrix
        matrix = as_projection(projection, layout.D, "projection")
        projection = "matrix"
    elif projection not in SWEEP_PROJECTIONS:
        raise ValueError(f"projection must be one of {SWEEP_PROJECTIONS}, got {projection!r}.")
    radii = _check_ratios(radii)
    dims = _check_dims(dims, layout.D if matrix is None else matrix.d)
    for name, value in (("max_samples", max_samples), ("radius_batch", radius_batch),
                        ("batch_size", batch_size)):
        if value is not None and (not is_int(value) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}.")
    if max_samples is not None:  # lengths first: slicing would hide a mismatch
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}; pass as many "
                             "labels as samples.")
        X, y = X[:max_samples], y[:max_samples]
    cfg = {"model_key": _Key.of(model),
           "dims": dims, "reference": reference, "projection": projection, "kind": kind,
           "matrix": matrix,
           "loss": loss, "gauss_newton": gauss_newton, "batch_size": batch_size,
           "dtype": dtype, "device": str(device) if device is not None else "cpu",
           "r_ref": reference_radius(model, reference)}
    seeds = check_random_state(hooks.random_state).integers(0, MAX_SEED, size=(int(n_subspaces), 2))
    done = set() if hooks.done is None else set(hooks.done)
    todo = [(s, i) for s in range(int(n_subspaces)) for i in range(len(radii))
            if (s, i) not in done]
    if radius_batch is None:  # a GPU evaluates all radii of a subspace in one vectorized pass
        radius_batch = len(radii) if cfg["device"].startswith("cuda") else 1
    tasks = []
    for s in range(int(n_subspaces)):
        idx = [i for (t, i) in todo if t == s]
        tasks += [(s, idx[k : k + radius_batch]) for k in range(0, len(idx), radius_batch)]
    bar = tqdm(total=len(todo), disable=not progress, desc="sweep", unit="point")
    jobs = [
        delayed(_sweep_task)(model, X, y, s, idx, [float(radii[i]) for i in idx],
                             tuple(map(int, seeds[s])), cfg)
        for s, idx in tasks
    ]
    rows = []
    for task_rows in _results_as_they_come(jobs, n_jobs):
        rows.extend(task_rows)
        if hooks.on_result is not None:
            hooks.on_result(task_rows)
        bar.update(len(task_rows) // len(dims))
    bar.close()
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["subspace", "radius_index", "dim"], ignore_index=True)
    return df


def _results_as_they_come(jobs, n_jobs):
    """Yield job results as they finish, on whatever joblib backend is active."""
    for return_as in ("generator_unordered", "generator", "list"):
        try:
            results = Parallel(n_jobs=n_jobs, return_as=return_as)(jobs)
        except ValueError as exc:  # the backend cannot stream results this way
            if "return_as" not in str(exc):
                raise
            continue
        yield from results
        return


@lru_cache(maxsize=4)
def _subspace_origin(model_key, seeds, reference, projection, d, dtype, device, matrix=None):
    """Init direction ``w0`` and projection ``P`` of one subspace index (cached per process)."""
    model = model_key.model
    net = copy.deepcopy(model).to(device=device, dtype=dtype)
    init_weights_(net, reference, generator=torch.Generator().manual_seed(seeds[0]))
    if matrix is not None:  # the user's: its first d columns
        P = as_projection(matrix.weight[:, :d]).to(device=device, dtype=dtype)
    else:
        P = make_projection(projection, ParamLayout(net).D, d, random_state=seeds[1],
                            dtype=dtype, device=device)
    return net, parameter_vector(net), P


class _Key:
    """Hashable by the model's content: a hash of its pickle (architecture, attributes,
    parameters and buffers), so two models that merely print alike never share a cached
    origin."""

    def __init__(self, model, key):
        self.model, self.key = model, key

    @staticmethod
    def of(model):
        """The content key of ``model``, computed once per sweep (not per task)."""
        try:
            return hashlib.sha256(pickle.dumps(model)).hexdigest()
        except (pickle.PicklingError, TypeError, AttributeError):  # e.g. a lambda inside
            return ("unpicklable", id(model))  # the cache keeps the model alive

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return self.key == other.key


def _sweep_task(model, X, y, s, indices, ratios, seeds, cfg) -> list[dict]:
    """Rows of subspace ``s`` at the radii ``ratios * r_ref`` (one vectorized Hessian call).

    Threads of one process (joblib's threading backend) run tasks one at a time: torch.func
    transforms keep process-global state. Process-based backends run in parallel.
    """
    with TRANSFORMS_LOCK:
        return _sweep_task_locked(model, X, y, s, indices, ratios, seeds, cfg)


def _sweep_task_locked(model, X, y, s, indices, ratios, seeds, cfg) -> list[dict]:
    dtype, device = cfg["dtype"], torch.device(cfg["device"])
    net, w0, P = _subspace_origin(_Key(model, cfg["model_key"]), seeds, cfg["reference"],
                                  cfg["projection"], cfg["dims"][-1], dtype, device,
                                  cfg.get("matrix"))
    scales = [ratio * cfg["r_ref"] / float(w0.norm()) for ratio in ratios]
    res = subspace_hessian(net, X, y, P, point=w0, scales=scales, kind=cfg["kind"],
                           loss=cfg["loss"], gauss_newton=cfg["gauss_newton"],
                           batch_size=cfg["batch_size"], dtype=dtype, device=device)
    at_point = copy.deepcopy(net)
    states = []
    for scale in scales:
        ParamLayout(at_point).assign_(at_point, w0 * scale)
        states.append(model_state(at_point, X, y, loss=cfg["loss"],
                                  batch_size=cfg["batch_size"], dtype=dtype, device=device))
    stats = sweep_statistics(res, cfg["dims"], states)
    rows, nd = [], len(cfg["dims"])
    for j, (i, ratio) in enumerate(zip(indices, ratios, strict=True)):
        meta = {"subspace": s, "radius_index": i, "radius_ratio": ratio,
                "log10_r2_ratio": 2 * math.log10(ratio), "radius": ratio * cfg["r_ref"],
                "reference_radius": cfg["r_ref"], "kind": cfg["kind"],
                "projection": cfg["projection"]}
        rows += [{**meta, **r} for r in stats[j * nd : (j + 1) * nd]]
    return rows


def plot_sweep(df: pd.DataFrame, path=None, title: str | None = None):
    """Fort's Figures 3-5 from a sweep table: trace ratio and fraction of positive
    eigenvalues against radius (one-sigma bands over subspaces, one curve per d), and the
    loss against radius on log-log axes. Returns the matplotlib Figure; saves to ``path``.

    The Figure is a plain :class:`matplotlib.figure.Figure`, not registered with pyplot
    (``plt.show()`` does not see it; a notebook displays it when it is the cell's value).
    """
    from ._mpl import pyplot_free

    fig, axes = pyplot_free().subplots(1, 3, figsize=(15, 4.2))
    for k, grp in df.groupby("dim"):
        stats = grp.groupby("log10_r2_ratio")[["trace_ratio", "frac_positive"]].agg(["mean", "std"])
        x = stats.index.values
        for ax, col in zip(axes[:2], ["trace_ratio", "frac_positive"], strict=True):
            m, sd = stats[(col, "mean")].values, stats[(col, "std")].fillna(0).values
            ax.plot(x, m, label=f"d = {k}")
            ax.fill_between(x, m - sd, m + sd, alpha=0.25)
    axes[0].set_ylabel(r"$\mathrm{Tr}(H)/\|H\|_F$ on the subspace")
    axes[1].set_ylabel("fraction of positive eigenvalues")
    axes[1].axhline(0.5, color="gray", lw=0.8, ls=":")
    axes[0].axhline(0.0, color="gray", lw=0.8, ls=":")
    first = df[df["dim"] == df["dim"].min()]
    loss = first.groupby("log10_r2_ratio")["loss"].agg(["mean", "std"])
    axes[2].errorbar(loss.index.values, loss["mean"], yerr=loss["std"].fillna(0), marker="o",
                     ms=3)
    axes[2].set_yscale("log")
    axes[2].set_ylabel("initial loss (cross-entropy, nats)")
    for ax in axes:  # one x-axis for all panels (Fort's), r / r_ref read off the top
        ax.set_xlabel(r"$\log_{10}(r^2 / r_{\mathrm{ref}}^2)$")
        ax.axvline(0.0, color="k", lw=0.8, ls="--")
        top = ax.secondary_xaxis("top", functions=(lambda x: 10 ** (np.asarray(x) / 2),
                                                   lambda r: 2 * np.log10(np.asarray(r))))
        top.set_xscale("log")
        top.set_xlabel(r"$r / r_{\mathrm{ref}}$")
    for ax in axes[:2]:
        ax.legend()
    fig.suptitle(title or "Goldilocks zone: curvature on random subspaces against radius")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
