"""``CurvatureProbe``: curvature statistics of an (initialized or fitted) estimator."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator

from .._flat import ParamLayout, parameter_vector
from .._measured import resolve
from .._names import LOSSES as _LOSSES
from .._names import SCORES, SHARPNESS, STATE, SUBSPACE_PROJECTIONS
from .._rng import MAX_SEED, draw_seed
from .._subspace import KINDS
from .._validation import (
    TRANSFORMS_LOCK,
    check_data,
    check_model,
    check_outputs,
    is_int,
)
from ..curvature import MAX_FULL_D, hessian_statistics, model_state, subspace_hessian
from ..projections import as_projection, make_projection
from ._constraints import (
    DTYPES,
    NO_VALIDATION,
    Dim,
    DType,
    Flag,
    IntRange,
    OneOf,
    check_dtype,
    validate_params,
)
from ._init_scaler import not_a_step

__all__ = ["CurvatureProbe"]

LOSSES = ("auto", *_LOSSES)


class CurvatureProbe(BaseEstimator):
    """Exact loss curvature of an estimator on random subspaces through its current point.

    For each of ``n_subspaces`` random ``dim``-dimensional subspaces, the exact
    ``dim x dim`` Hessian of the mean training loss (and its Gauss-Newton part ``G`` and
    H-term ``H - G``) is computed by :func:`goldisk.subspace_hessian` in float64, and
    summarized by :func:`goldisk.hessian_statistics`. Inside the Goldilocks zone
    ``trace_ratio = Tr(H)/||H||_F`` is large and positive (Fort & Scherlis 2019).

    A probe is a valid ``scoring=`` entry: ``probe(estimator, X, y)`` is the mean of the
    ``statistic`` column (higher is better; ``statistic="loss"`` gives the negative loss).
    Like a kernel of scikit-learn's ``GaussianProcessClassifier(kernel=RBF())``, a probe is
    a parameter object, not a Pipeline step: pass it as ``scoring=``, as
    ``GoldilocksSelector(..., probe=CurvatureProbe(...))`` or call :meth:`measure`.

    Parameters
    ----------
    dim : int or None, default=50
        Subspace dimension. ``None``: the full space, exactly (only for ``D <= 20000``).
    n_subspaces : int, default=3
        Random subspaces per measurement (rows of :meth:`measure`).
    kind : {"hyperplane", "hypersphere"}, default="hyperplane"
    projection : str, D x d tensor or array, or Projection, default="auto"
        A kind (``"auto"``, ``"dense"``, ``"sparse"``, ``"sparse-li"``, ``"fastfood"``)
        draws ``n_subspaces`` random subspaces of dimension ``dim``. The user's own
        matrix (columns used as given, not normalized: see
        :func:`goldisk.projections.as_projection`) is the one subspace measured, so that
        results can be compared with other code on the same subspace; ``dim`` and
        ``n_subspaces`` are then not used.
    max_samples : int or None, default=1000
        Random subset of ``(X, y)`` used (``None``: all samples).
    batch_size : int, default=512
    gauss_newton : bool, default=True
        Also compute ``G`` and the H-term (columns ``g_*``, ``h_*``, ``g_dominance``).
    statistic : str, default="trace_ratio"
        The column averaged by ``__call__``: any of ``SCORES``. (Named ``statistic``, not
        ``score``, so that it does not shadow scikit-learn's ``score`` method name.)
    loss : {"auto", "cross_entropy", "mse"}, default="auto"
        ``"auto"``: from the net's criterion, or from the type of ``y`` for a module.
    dtype : {"float64", "float32"}, default="float64"
    random_state : None, int or generator, default=None
        Seeds the subspaces and the subsample.
    sharpness : bool, default=False
        Also measure the full-space ``lambda_max`` and ``lambda_min`` of the Hessian and
        ``ggn_lambda_max`` of the Gauss-Newton matrix (columns of the same name, equal on
        every row; :func:`goldisk.top_eigenvalues` on the same samples, relative residual
        1e-6). Off by default: they cost tens of Hessian-vector products over the samples.

    Examples
    --------
    >>> import numpy as np
    >>> from goldisk.models import MLP
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)
    >>> probe = CurvatureProbe(dim=5, n_subspaces=2, random_state=0)
    >>> table = probe.measure(MLP(4, (6,), 3), X, y)
    >>> table.shape[0], {"trace_ratio", "g_trace", "h_trace", "loss"} <= set(table)
    (2, True)
    """

    _parameter_constraints = {
        "dim": Dim(),  # (not for the user's own subspace, where it does not apply)
        "n_subspaces": IntRange(1),
        "batch_size": IntRange(1),
        "max_samples": IntRange(1, allow_none=True),
        "kind": OneOf(KINDS),
        "projection": NO_VALIDATION,  # a kind or the user's own D x d matrix
        "statistic": OneOf(SCORES),
        "loss": OneOf(LOSSES),
        "dtype": DType(),
        "gauss_newton": Flag(strict=False),
        "sharpness": Flag(strict=False),
        "random_state": NO_VALIDATION,  # resolved by _seed_sequence
    }

    def __init__(self, dim=50, n_subspaces=3, kind="hyperplane", projection="auto",
                 max_samples=1000, batch_size=512, gauss_newton=True, statistic="trace_ratio",
                 loss="auto", dtype="float64", random_state=None, sharpness=False):
        self.dim = dim
        self.n_subspaces = n_subspaces
        self.kind = kind
        self.projection = projection
        self.max_samples = max_samples
        self.batch_size = batch_size
        self.gauss_newton = gauss_newton
        self.statistic = statistic
        self.loss = loss
        self.dtype = dtype
        self.random_state = random_state
        self.sharpness = sharpness

    def fit(self, X=None, y=None, **params):
        """Not a Pipeline step: raises a ``TypeError`` that shows where a probe goes."""
        raise not_a_step(self, None, "dim")

    transform = fit

    def _users_subspace(self) -> bool:
        """``projection`` is the user's own ``D x d`` matrix (or Projection), not a kind."""
        return not isinstance(self.projection, str)

    def _validate(self, D=None) -> None:
        users = self._users_subspace()
        if users:  # that one subspace: dim and n_subspaces do not apply
            if D is not None:
                as_projection(self.projection, D, "projection")
        elif self.dim is None and D is not None and D > MAX_FULL_D:
            raise ValueError(f"dim=None asks for the full {D} x {D} Hessian, only supported "
                             f"for D <= {MAX_FULL_D}; pass dim=50 (a random subspace).")
        else:
            OneOf(SUBSPACE_PROJECTIONS).check(self.projection, "projection")
        validate_params(self, skip=("dim",) if users else (), D=D)
        if not self.gauss_newton and self.statistic.startswith(("g_", "h_")):
            raise ValueError(f"statistic={self.statistic!r} needs gauss_newton=True.")

    def make_projections(self, D: int) -> list:
        """The projections :meth:`measure` uses for a model with ``D`` parameters
        (``[None]`` for ``dim=None``); identical across calls for an int ``random_state``."""
        self._validate(D)
        if self._users_subspace():
            return [as_projection(self.projection, D, "projection")]
        if self.dim is None:
            return [None]
        rng = np.random.default_rng(self._seed_sequence().spawn(1)[0])
        return [make_projection(self.projection, D, int(self.dim),
                                random_state=int(rng.integers(0, MAX_SEED)))
                for _ in range(self.n_subspaces)]

    def _seed_sequence(self) -> np.random.SeedSequence:
        rs = self.random_state
        if rs is None or is_int(rs):
            if rs is not None and rs < 0:
                raise ValueError(f"random_state must be None or an int >= 0, got {rs}.")
            return np.random.SeedSequence(rs)
        try:
            return np.random.SeedSequence(draw_seed(rs))
        except TypeError as exc:
            raise ValueError(f"invalid random_state: {exc}") from exc

    def hessians(self, estimator, X, y):
        """``(module, X, y, loss, [(projection, CurvatureResult), ...])`` as measured."""
        return self._hessians(*resolve(estimator, X, y, loss=self.loss))

    def _hessians(self, module, X, y, loss, hessians=True, gauss_newton=True):
        """``(module, X, y, loss, [(P, result), ...])``; ``hessians=False`` prepares the
        data only, ``gauss_newton=False`` skips G (both for callers that need less)."""
        if self.loss != "auto":
            loss = self.loss
        elif loss is None:
            floating = y.is_floating_point() if torch.is_tensor(y) else \
                np.issubdtype(np.asarray(y).dtype, np.floating)
            loss = "mse" if floating else "cross_entropy"
        check_model(module)
        self._validate(ParamLayout(module).D)
        X, y = check_data(X, y)
        check_outputs(module, X, y, loss)
        if self.kind == "hypersphere" and not bool(parameter_vector(module).ne(0).any()):
            raise ValueError(
                "kind='hypersphere' needs a point of radius > 0, but every parameter of the "
                "model is 0; initialize the model (e.g. with InitScaler) or use "
                "kind='hyperplane'."
            )
        if self.max_samples is not None and len(X) > self.max_samples:
            rng = np.random.default_rng(self._seed_sequence().spawn(2)[1])
            idx = np.sort(rng.choice(len(X), self.max_samples, replace=False))
            X, y = X[idx], y[idx]
        projections = self.make_projections(ParamLayout(module).D) if hessians else []
        modes = [(m, m.training) for m in module.modules()]
        module.eval()
        try:
            with TRANSFORMS_LOCK:  # torch's forward-mode AD is not thread-safe
                results = [(P, subspace_hessian(
                    module, X, y, P, kind=self.kind, loss=loss,
                    gauss_newton=self.gauss_newton and gauss_newton,
                    batch_size=self.batch_size,
                    dtype=DTYPES[check_dtype(self.dtype)]))
                    for P in projections]
        finally:  # each submodule's own mode (e.g. a frozen BatchNorm in a training net)
            for m, mode in modes:
                m.training = mode
        return module, X, y, loss, results

    def measure(self, estimator, X, y) -> pd.DataFrame:
        """Curvature and state statistics, one row per random subspace.

        Parameters
        ----------
        estimator : net, Pipeline, GoldilocksSelector or torch.nn.Module
            A goldisk or skorch net (initialized or fitted; a subspace net is measured
            in the full parameter space around its current point), a Pipeline ending in
            one (its earlier steps transform ``X``), a fitted
            :class:`GoldilocksSelector`, or a torch module returning logits.
        X, y : array-like
            Data on which the mean loss is taken (labels as given to the estimator).

        Returns
        -------
        pandas.DataFrame
            Columns ``subspace``, ``dim``, ``trace``, ``frobenius``, ``trace_ratio``,
            ``frac_positive``, ``eig_min``, ``eig_max``, the same with prefixes ``g_``
            (Gauss-Newton ``G``) and ``h_`` (H-term ``H - G``), ``g_dominance``
            (``g_trace / |h_trace|``), and the state at the point: ``loss``,
            ``accuracy``, ``confidence``, ``entropy``, ``logit_grad_norm``,
            ``zero_logit_frac`` (classification only for the middle four); with
            ``sharpness=True`` also ``lambda_max``, ``lambda_min`` and ``ggn_lambda_max``.
        """
        return self._measure(*resolve(estimator, X, y, loss=self.loss))

    def _measure_net(self, net, X, y, columns=None) -> pd.DataFrame:
        """``measure`` from inside a net's training (``CurvatureTracker``): ``(X, y)``
        already are what its module sees."""
        return self._measure(*resolve(net, X, y, prepared=True, loss=self.loss),
                             columns=columns)

    def _measure(self, module, X, y, loss, columns=None) -> pd.DataFrame:
        """``measure``'s table; with ``columns``, only what they need is computed (no
        Hessian for state columns alone, no G without ``g_``/``h_`` columns), the values
        being those of the whole table."""
        need_h = columns is None or any(c not in STATE + SHARPNESS for c in columns)
        need_s = self.sharpness if columns is None else any(c in SHARPNESS for c in columns)
        need_g = columns is None or any(c.startswith(("g_", "h_")) for c in columns)
        module, X, y, loss, results = self._hessians(module, X, y, loss, need_h, need_g)
        dtype = DTYPES[check_dtype(self.dtype)]
        state = model_state(copy.deepcopy(module).eval(), X, y, loss=loss,
                            batch_size=self.batch_size, dtype=dtype)
        rows = []
        for i, (_, res) in enumerate(results):
            row = {"subspace": i, "dim": int(res.H.shape[-1]), **hessian_statistics(res.H)}
            if res.G is not None:
                row.update(hessian_statistics(res.G, "g_"))
                row.update(hessian_statistics(res.Hterm, "h_"))
                h = abs(row["h_trace"])
                row["g_dominance"] = row["g_trace"] / h if h > 0 else float("inf")
            row.update(state)
            rows.append(row)
        if need_s:
            state = {**state, **self._sharpness(module, X, y, loss, dtype)}
            for row in rows:
                row.update(state)
        return pd.DataFrame(rows or [{"subspace": 0, **state}])

    def _sharpness(self, module, X, y, loss, dtype) -> dict:
        """Full-space ``lambda_max``, ``lambda_min`` (Hessian), ``ggn_lambda_max``."""
        from ..curvature import top_eigenvalues

        seed = int(np.random.default_rng(self._seed_sequence().spawn(3)[2]).integers(2**62))
        kw = dict(loss=loss, batch_size=self.batch_size, dtype=dtype, random_state=seed)
        modes = [(m, m.training) for m in module.modules()]
        module.eval()
        try:
            with TRANSFORMS_LOCK:
                lam = top_eigenvalues(module, X, y, 1, which="both", **kw)
                g = top_eigenvalues(module, X, y, 1, operator="ggn", **kw)
        finally:
            for m, mode in modes:
                m.training = mode
        return {"lambda_max": float(lam[0]), "lambda_min": float(lam[-1]),
                "ggn_lambda_max": float(g[0])}

    def __call__(self, estimator, X, y) -> float:
        """Mean of the ``statistic`` column (negated for ``"loss"``): a scikit-learn
        scorer."""
        table = self.measure(estimator, X, y)
        if self.statistic not in table:
            raise ValueError(f"statistic={self.statistic!r} is not measured for this estimator "
                             f"(regression?); use one of {list(table)[2:]}.")
        value = float(table[self.statistic].mean())
        return -value if self.statistic == "loss" else value
