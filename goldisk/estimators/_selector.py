"""``GoldilocksSelector``: choose the best of several random initializations, then fit it."""

from __future__ import annotations

import copy
import functools
import numbers
import types
import warnings

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

from .._rng import MAX_TABLE_SEED, check_random_state
from ._constraints import (
    NO_VALIDATION,
    CallableOrOneOf,
    Flag,
    InstanceOf,
    IntRange,
    NJobs,
    validate_params,
)
from ._init_criteria import INIT_CRITERIA, init_criterion
from ._net import check_fit_params
from ._probe import SCORES, CurvatureProbe

__all__ = ["GoldilocksSelector"]

#: Criteria whose lower value is claimed better: the init loss (Fort & Scherlis) and the
#: full-space sharpness (Cohen et al. 2021; Gilmer et al. 2021: a flatter init is stable
#: at larger steps), as in ``goldisk.curvature.INIT_STATISTICS``.
_MINIMIZED = ("loss", "lambda_max")


def _net_prefix(estimator, path: str = "") -> str:
    """``""`` for a net, ``"<step>__"`` (recursively) for a Pipeline ending in one."""
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        return _net_prefix(last, f"{path}{name}__")
    if isinstance(estimator, type):  # get_params would fail: "missing 1 required ... self"
        raise TypeError(f"estimator must be an instance, got the class {estimator.__name__}; "
                        f"pass {estimator.__name__}(...) (e.g. with module=..., max_epochs=...).")
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    if "random_state" not in params or "max_epochs" not in params:
        raise ValueError(
            "estimator must be a goldisk net (with random_state and max_epochs parameters) "
            f"or a Pipeline ending in one; got {type(estimator).__name__}."
        )
    return path


class _delegate:  # noqa: N801 - used as a decorator, like sklearn's available_if
    """A method available when ``refit`` and the (best) estimator has it (as GridSearchCV).

    Unlike ``available_if`` (whose AttributeError says only "has no attribute"), the
    AttributeError says why: ``hasattr`` stays False, and ``sel.predict`` tells the user
    that ``refit=False`` selectors only rank.
    """

    def __init__(self, method):
        self.method = method

    def __call__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)
        return self

    def check(self, obj, method=True):
        if not obj.refit:
            raise AttributeError(
                f"this GoldilocksSelector was built with refit=False, so it only ranks the "
                f"candidates (candidates_, best_seed_) and has no {self.method}: fit it with "
                f"refit=True, or fit clone(estimator).set_params(random_state="
                f"selector.best_seed_) yourself.")
        est = obj.best_estimator_ if hasattr(obj, "best_estimator_") else obj.estimator
        if method and not hasattr(est, self.method):
            raise AttributeError(f"{type(est).__name__} has no {self.method}, so neither has "
                                 "this GoldilocksSelector.")

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        self.check(obj)
        return types.MethodType(self.fn, obj)


def _measure_candidate(estimator, prefix, seed, probe, criterion, X, y):
    """``(row, input attributes)`` of one candidate: initialized with ``seed``, measured."""
    cand = clone(estimator).set_params(**{prefix + "random_state": seed,
                                          prefix + "max_epochs": 0})
    cand.fit(X, y)
    table = probe.measure(cand, X, y)
    spread = float("nan")
    if callable(criterion):
        score = float(criterion(cand, X, y))
    elif criterion not in table:
        raise ValueError(
            f"criterion={criterion!r} is not measured for this estimator (regression?); "
            f"use one of {list(table.columns[2:])} or a callable.")
    else:
        score = float(table[criterion].mean())
        if len(table) > 1:  # over the probe's subspaces: the ranking's noise
            spread = float(table[criterion].std(ddof=1))
    stats = table.drop(columns=["subspace"]).mean(numeric_only=True).to_dict()
    return {"score": score, "score_std": spread, **stats}, _input_attributes(cand)


def _input_attributes(estimator) -> dict:
    """``n_features_in_`` and ``feature_names_in_`` (DataFrame input) of a fitted estimator."""
    return {k: getattr(estimator, k) for k in ("n_features_in_", "feature_names_in_")
            if hasattr(estimator, k)}


class GoldilocksSelector(MetaEstimatorMixin, BaseEstimator):
    """Pick the best of several random initializations by a criterion measured at init,
    then fit it.

    Which criterion? Measured (``benchmarks/study_selector.py``; table in
    ``docs/user_guide.md``): in 80 pools of 16 candidates (digits and mnist5k, small MLPs,
    radius ``r_X`` and ``2 r_X``, held-out accuracy after 1, 2 and 5 epochs of Adam), the
    candidate of lowest initial training loss beat its pool's mean accuracy by +4.8 points
    (95% CI [+4.0, +5.6]), averaged over the three training lengths; a held-out study with
    other seeds (80 pools) gave +4.9 points (95% CI [+4.2, +5.6]). The curvature criteria
    gain less: ``trace_ratio`` +2.8 [+2.0, +3.6], ``g_trace_ratio`` +1.4 [+0.7, +2.2],
    ``frac_positive`` +0.5 [-0.4, +1.4]. Every gain shrinks with training (about +1 point
    after 5 epochs on mnist5k), so the default is ``criterion="loss"``.

    For each of ``n_candidates`` seeds drawn from ``random_state``, a clone of
    ``estimator`` is initialized with that seed (``max_epochs=0``: no training, earlier
    Pipeline steps fitted) and measured on the training data by ``probe``. The candidate
    with the highest criterion (lowest for ``"loss"`` and ``"lambda_max"``) is then fitted
    from exactly that
    initialization: the same seed gives the same initial parameters.

    Parameters
    ----------
    estimator : GoldilocksClassifier, GoldilocksRegressor or Pipeline ending in one
    n_candidates : int, default=16
    criterion : str or callable, default="loss"
        The default, ``"loss"`` (the training loss at init, minimized), is the criterion
        with the best measured evidence (above). Otherwise a column of
        :meth:`CurvatureProbe.measure`, averaged over the probe's subspaces:
        ``"trace_ratio"`` (``Tr H / ||H||_F``), ``"frac_positive"`` (fraction of
        positive eigenvalues), ``"g_dominance"`` (``g_trace / |h_trace|``: how much the
        positive semi-definite Gauss-Newton part dominates), ``"loss"`` (minimized),
        ``"lambda_max"`` (minimized; needs ``probe=CurvatureProbe(sharpness=True)``), or
        any other of ``goldisk.estimators.SCORES`` (maximized), or an init statistic of
        ``goldisk.curvature.INIT_STATISTICS`` (``"grad_norm"``, ``"snip"``, ``"grasp"``,
        ``"synflow"``, ``"jacob_cov"``, ``"ntk_cond"``: signed so that the
        claimed-better direction is maximized, see ``InitStatisticCriterion``). A callable
        ``criterion(estimator, X, y) -> float`` (higher is better) receives the
        initialized candidate.
    probe : CurvatureProbe or None, default=None
        ``None``: ``CurvatureProbe(dim=20, n_subspaces=2, max_samples=256)``, the probe of
        the criterion study (two subspaces, so that ``score_std`` is a number). A probe
        without ``random_state``, or with a numpy Generator or RandomState as one, gets
        one int seed for all candidates (the same subspaces).
    refit : bool, default=True
        Fit the best candidate (``best_estimator_``); ``False`` only ranks them (then
        ``predict``, ``predict_proba``, ``score`` and ``classes_`` are not available).
    n_jobs : int or None, default=None
        Candidates measured in parallel by joblib (``-1``: all cores; ``None``: one, or
        what a surrounding ``joblib.parallel_config`` / dask / ray backend says). The
        result does not depend on it.
    random_state : None, int or numpy Generator, default=None

    Attributes
    ----------
    candidates_ : pandas.DataFrame
        One row per candidate: ``candidate``, ``seed``, ``score`` (the criterion),
        ``score_std`` (its standard deviation over the probe's subspaces, NaN for one
        subspace or a callable criterion) and the probe's statistics (means over its
        subspaces). Compare the spread of ``score`` across candidates with ``score_std``:
        the default probe (two 20-dimensional subspaces) ranks close candidates by noise;
        a probe with more subspaces (``n_subspaces``) or more directions (``dim``) ranks
        them more reliably.
    best_index_ : int
    best_seed_ : int
    best_score_ : float
    best_estimator_ : estimator
        Fitted from the best candidate's initialization (when ``refit``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` was a DataFrame.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from goldisk import CurvatureProbe, GoldilocksClassifier, GoldilocksSelector
    >>> from goldisk.models import MLP
    >>> X, y = load_digits(return_X_y=True)
    >>> net = GoldilocksClassifier(MLP, module__hidden=(16,), max_epochs=1)
    >>> sel = GoldilocksSelector(net, n_candidates=2, probe=CurvatureProbe(dim=4),
    ...                          random_state=0).fit(X[:100] / 16, y[:100])
    >>> sel.candidates_.shape[0], sel.best_index_ == sel.candidates_["loss"].idxmin()
    (2, True)
    """

    _parameter_constraints = {
        "estimator": NO_VALIDATION,  # found by _net_prefix (a net, or a Pipeline ending in one)
        "n_candidates": IntRange(1),
        "criterion": CallableOrOneOf((*SCORES, *INIT_CRITERIA)),
        "probe": InstanceOf(CurvatureProbe),
        "refit": Flag(),
        "n_jobs": NJobs(),
        "random_state": NO_VALIDATION,  # resolved once in fit
    }

    def __init__(self, estimator, n_candidates=16, criterion="loss", probe=None,
                 refit=True, n_jobs=None, random_state=None):
        self.estimator = estimator
        self.n_candidates = n_candidates
        self.criterion = criterion
        self.probe = probe
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _validate(self) -> str:
        validate_params(self)
        return _net_prefix(self.estimator)

    def _measured_estimator(self):
        """What ``CurvatureProbe.measure`` measures for a selector: its best estimator."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_

    def fit(self, X, y, **fit_params):
        """Measure ``n_candidates`` initializations on ``(X, y)`` and fit the best one.

        ``fit_params`` go to the final ``fit`` of the best candidate.
        """
        prefix = self._validate()
        check_fit_params(fit_params)  # before measuring any candidate
        try:
            rng = check_random_state(self.random_state)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid random_state: {exc}") from exc
        seeds = [int(s) for s in rng.integers(0, MAX_TABLE_SEED, size=self.n_candidates)]
        probe = CurvatureProbe(dim=20, n_subspaces=2, max_samples=256) if self.probe is None \
            else clone(self.probe)
        if probe.random_state is None:
            probe.set_params(random_state=int(rng.integers(0, MAX_TABLE_SEED)))
        elif not isinstance(probe.random_state, numbers.Integral):
            # a Generator / RandomState would be used up candidate after candidate (and
            # copied per worker): one seed from it gives every candidate the same subspaces
            try:
                seed = int(check_random_state(probe.random_state).integers(0, MAX_TABLE_SEED))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"invalid probe__random_state: {exc}") from exc
            probe.set_params(random_state=seed)
        # candidates are independent: joblib runs them in parallel (n_jobs, or a
        # parallel_config / dask / ray backend), in order, with the same numbers
        results = Parallel(n_jobs=self.n_jobs)(
            delayed(_measure_candidate)(self.estimator, prefix, seed, probe,
                                        init_criterion(self.criterion), X, y)
            for seed in seeds)
        rows = [{"candidate": i, "seed": seed, **row}
                for i, (seed, (row, _)) in enumerate(zip(seeds, results, strict=True))]
        for name in ("n_features_in_", "feature_names_in_"):  # none left from a last fit
            self.__dict__.pop(name, None)
        for name, value in results[-1][1].items():
            setattr(self, name, value)
        self.candidates_ = pd.DataFrame(rows)
        scores = self.candidates_["score"].to_numpy(dtype=float)
        if np.all(np.isnan(scores)):
            warnings.warn("every candidate's criterion is NaN; keeping the first one.",
                          RuntimeWarning, stacklevel=2)
            best = 0
        elif self.criterion in _MINIMIZED:
            best = int(np.nanargmin(scores))
        else:
            best = int(np.nanargmax(scores))
        self.best_index_ = best
        self.best_seed_ = seeds[best]
        self.best_score_ = float(scores[best])
        if self.refit:
            est = clone(self.estimator).set_params(**{prefix + "random_state": self.best_seed_})
            self.best_estimator_ = est.fit(X, y, **fit_params)
            for name, value in _input_attributes(est).items():
                setattr(self, name, value)
        return self

    @_delegate("predict")
    def predict(self, X):
        """Predict with ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict(X)

    @_delegate("predict_proba")
    def predict_proba(self, X):
        """Class probabilities from ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict_proba(X)

    @_delegate("score")
    def score(self, X, y, sample_weight=None):
        """``best_estimator_.score`` (accuracy for classifiers, R^2 for regressors)."""
        check_is_fitted(self, "best_estimator_")
        kw = {} if sample_weight is None else {"sample_weight": sample_weight}
        return self.best_estimator_.score(X, y, **kw)

    @property
    def classes_(self):
        """Labels of ``best_estimator_``."""
        _delegate("classes_").check(self, method=False)
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.classes_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        sub = get_tags(self.estimator)
        tags.estimator_type = sub.estimator_type
        tags.classifier_tags = copy.deepcopy(sub.classifier_tags)
        tags.regressor_tags = copy.deepcopy(sub.regressor_tags)
        tags.target_tags = copy.deepcopy(sub.target_tags)
        tags.input_tags = copy.deepcopy(sub.input_tags)
        return tags
