"""Bad-input rows for CurvatureProbe (goldisk/estimators/_probe.py).

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _bad_input_cases import (
    OK,
    X_INF,
    X_NAN,
    X_REV,
    Y_REV,
    X,
    Y,
    case,
    clf,
    fitted,
    net,
    run_row,
    zero_net,
)
from torch import nn

from goldisk import CurvatureProbe


def _probe_reversed():
    a = CurvatureProbe(dim=2, n_subspaces=1, random_state=0).measure(fitted(), X_REV, Y_REV)
    b = CurvatureProbe(dim=2, n_subspaces=1, random_state=0).measure(
        fitted(), np.ascontiguousarray(X_REV), Y_REV.copy())
    return a.equals(b)


CASES = [
    case("probe-unfitted-net", lambda: CurvatureProbe(dim=2).measure(clf(), X, Y), ValueError,
         r"not initialized yet. Call 'initialize' or 'fit'"),
    case("probe-unseen-labels", lambda: CurvatureProbe(dim=2).measure(fitted(), X, Y + 5),
         ValueError, r"y contains labels not in classes_"),
    case("probe-float-class-labels-on-a-plain-module",
         lambda: CurvatureProbe(dim=2).measure(net(), X, Y.astype(float)), ValueError,
         r"loss='mse' needs 3 target\(s\).*integer class labels or pass "
         r"loss='cross_entropy'"),
    case("probe-X-nan", lambda: CurvatureProbe(dim=2).measure(net(), X_NAN, Y), ValueError,
         r"X contains NaN or infinite values; remove or impute"),
    case("probe-X-inf", lambda: CurvatureProbe(dim=2).measure(net(), X_INF, Y), ValueError,
         r"X contains NaN or infinite values"),
    case("probe-X-empty", lambda: CurvatureProbe(dim=2).measure(net(), X[:0], Y[:0]),
         ValueError, r"X is empty \(0 samples\); pass at least one sample"),
    case("probe-X-sparse", lambda: CurvatureProbe(dim=2).measure(net(), sp.csr_matrix(X), Y),
         TypeError, r"X is a scipy sparse matrix.*X\.toarray\(\)"),
    case("probe-X-pandas", lambda: CurvatureProbe(dim=2, random_state=0).measure(
        net(), pd.DataFrame(X), pd.Series(Y)), OK,
         check=lambda t: np.isfinite(t["trace_ratio"]).all()),
    case("probe-X-float16", lambda: CurvatureProbe(dim=2, random_state=0).measure(
        net(), X.astype(np.float16), Y), OK, check=lambda t: np.isfinite(t["trace"]).all()),
    case("probe-X-wrong-shape", lambda: CurvatureProbe(dim=2).measure(net(), X[:, :3], Y),
         ValueError, r"model could not process X with sample shape \(3,\).*in_features"),
    case("probe-criterion-label-smoothing", lambda: CurvatureProbe(dim=2).measure(
        fitted().set_params(criterion__label_smoothing=0.3).initialize(), X, Y), ValueError,
         r"CrossEntropyLoss\(label_smoothing=0.3\) is not the plain mean.*loss='cross_entropy'"),
    case("probe-criterion-class-weights", lambda: CurvatureProbe(dim=2).measure(
        clf(criterion__weight=torch.tensor([1.0, 5.0, 0.2])).fit(X, Y), X, Y), ValueError,
         r"CrossEntropyLoss\(weight=tensor.*not the plain mean cross-entropy"),
    case("probe-criterion-sum", lambda: CurvatureProbe(dim=2).measure(
        clf(criterion__reduction="sum").fit(X, Y), X, Y), ValueError,
         r"reduction='sum'.*pass loss='cross_entropy' to the probe"),
    case("probe-criterion-override", lambda: CurvatureProbe(dim=2, loss="cross_entropy").measure(
        clf(criterion__label_smoothing=0.3).fit(X, Y), X, Y), OK,
         check=lambda t: np.isfinite(t["trace"]).all()),
    case("probe-X-y-lengths", lambda: CurvatureProbe(dim=2).measure(net(), X, Y[:10]),
         ValueError, r"X has 24 samples but y has 10 samples"),
    case("probe-labels-out-of-range", lambda: CurvatureProbe(dim=2).measure(net(), X, Y + 3),
         ValueError, r"labels in \[3, 5\] but model returns 3 logits.*LabelEncoder"),
    case("probe-module-without-parameters", lambda: CurvatureProbe(dim=2).measure(
        nn.Flatten(), X, Y), ValueError, r"model \(Flatten\) has no parameters"),
    case("probe-hypersphere-radius-zero", lambda: CurvatureProbe(
        dim=2, kind="hypersphere").measure(zero_net(), X, Y), ValueError,
         r"kind='hypersphere' needs a point of radius > 0.*kind='hyperplane'"),
    case("probe-dim-zero", lambda: CurvatureProbe(dim=0).measure(net(), X, Y), ValueError,
         r"dim must be an int >= 1"),
    case("probe-dim-above-D", lambda: CurvatureProbe(dim=50).measure(net(), X, Y), ValueError,
         r"dim must be an int >= 1 and <= D=43"),
    case("probe-n_subspaces-zero", lambda: CurvatureProbe(dim=2, n_subspaces=0).measure(
        net(), X, Y), ValueError, r"n_subspaces must be an int >= 1"),
    case("probe-projection-unknown", lambda: CurvatureProbe(dim=2, projection="gauss").measure(
        net(), X, Y), ValueError, r"projection must be one of \['dense'"),
    case("probe-kind-unknown", lambda: CurvatureProbe(dim=2, kind="ball").measure(net(), X, Y),
         ValueError, r"kind must be one of \['hyperplane', 'hypersphere'\]"),
    case("probe-statistic-unknown", lambda: CurvatureProbe(dim=2, statistic="acc").measure(
        net(), X, Y), ValueError, r"statistic must be one of \[.trace."),
    case("probe-loss-unknown", lambda: CurvatureProbe(dim=2, loss="hinge").measure(
        net(), X, Y), ValueError, r"loss must be one of \['auto', 'cross_entropy', 'mse'\]"),
    case("CurvatureProbe-gauss_newton-string",
         lambda: CurvatureProbe(dim=2, gauss_newton="no").measure(net(), X, Y), ValueError,
         r"gauss_newton must be True or False, got 'no'"),
    case("i17-c07-probe-negative-stride", _probe_reversed, OK, check=bool),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
