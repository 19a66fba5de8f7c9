"""The init statistics of :mod:`goldisk.curvature` as ``GoldilocksSelector`` criteria."""

from __future__ import annotations

import numpy as np

from ..curvature import INIT_STATISTICS, init_statistics
from ._probe import SCORES, resolve

__all__ = ["INIT_CRITERIA", "InitStatisticCriterion", "init_criterion"]

#: Criteria computed by :func:`goldisk.curvature.init_statistics` (the others of
#: ``INIT_STATISTICS`` are columns of ``CurvatureProbe.measure`` already, maximized as
#: columns; ``criterion=InitStatisticCriterion(name)`` measures any of them with its
#: claimed sign instead, e.g. ``-lambda_max``).
INIT_CRITERIA = tuple(s for s in INIT_STATISTICS if s not in SCORES)


class InitStatisticCriterion:
    """``criterion(estimator, X, y)``: an init statistic, signed so that higher is better.

    The value is ``INIT_STATISTICS[name] * statistic``: e.g. ``-ntk_cond`` (TE-NAS: a
    smaller NTK condition number is claimed better) and ``-lambda_max``; the proxies of
    Abdelfattah et al. 2021 keep their sign. It is measured on the first ``max_samples``
    samples (in the order given) with a fixed ``random_state``, so that every candidate is
    measured alike.

    Examples
    --------
    >>> import numpy as np
    >>> from goldisk.models import MLP
    >>> X, y = np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 3
    >>> c = InitStatisticCriterion("ntk_cond", n_batch=8)
    >>> c(MLP(4, (6,), 3), X, y) <= -1   # minus a condition number
    True
    """

    def __init__(self, name: str, max_samples: int | None = 500, n_batch: int = 64,
                 random_state: int = 0):
        if name not in INIT_STATISTICS:
            raise ValueError(f"name must be one of {list(INIT_STATISTICS)}, got {name!r}.")
        self.name = name
        self.max_samples = max_samples
        self.n_batch = n_batch
        self.random_state = random_state

    def __call__(self, estimator, X, y) -> float:
        module, X, y, loss = resolve(estimator, X, y)
        if loss is None:
            floating = np.issubdtype(np.asarray(y).dtype, np.floating) if not \
                hasattr(y, "is_floating_point") else y.is_floating_point()
            loss = "mse" if floating else "cross_entropy"
        if self.max_samples is not None:
            X, y = X[: self.max_samples], y[: self.max_samples]
        value = init_statistics(module, X, y, [self.name], loss=loss,
                                n_batch=min(self.n_batch, max(len(X), 2)),
                                random_state=self.random_state)[self.name]
        return INIT_STATISTICS[self.name] * float(value)

    def __repr__(self) -> str:
        return f"InitStatisticCriterion({self.name!r})"


def init_criterion(criterion):
    """``criterion`` itself, or an :class:`InitStatisticCriterion` for a name of
    ``INIT_CRITERIA``."""
    if isinstance(criterion, str) and criterion in INIT_CRITERIA:
        return InitStatisticCriterion(criterion)
    return criterion
