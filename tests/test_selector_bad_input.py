"""Bad-input rows for GoldilocksSelector (goldisk/estimators/_selector.py).

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import pytest
from _bad_input_cases import X, Y, case, clf, reg, run_row
from torch import nn

from goldisk import CurvatureProbe, GoldilocksClassifier, GoldilocksSelector

CASES = [
    case("selector-criterion-unknown", lambda: GoldilocksSelector(
        clf(), criterion="top5").fit(X, Y), ValueError, r"criterion must be a callable or one"),
    case("selector-regressor-accuracy", lambda: GoldilocksSelector(
        reg(), n_candidates=2, criterion="accuracy", probe=CurvatureProbe(dim=2)).fit(
        X, Y.astype(float)), ValueError, r"criterion='accuracy' is not measured.*regression"),
    case("selector-n_candidates-zero", lambda: GoldilocksSelector(
        clf(), n_candidates=0).fit(X, Y), ValueError, r"n_candidates must be an int >= 1"),
    case("selector-probe-not-a-probe", lambda: GoldilocksSelector(clf(), probe="x").fit(X, Y),
         ValueError, r"probe must be None or a CurvatureProbe"),
    case("selector-estimator-not-a-net", lambda: GoldilocksSelector(
        nn.Linear(4, 3)).fit(X, Y), ValueError, r"estimator must be a goldisk net"),
    case("i17-c13-selector-given-the-class", lambda: GoldilocksSelector(
        GoldilocksClassifier).fit(X, Y), TypeError,
         r"estimator must be an instance, got the class GoldilocksClassifier"),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
