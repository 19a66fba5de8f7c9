"""Bad-input rows for radius_sweep (goldisk/sweep.py).

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import math

import pytest
from _bad_input_cases import X_NAN, X, Y, case, net, run_row, sweep

from goldisk.sweep import radius_sweep

CASES = [
    case("radius_sweep-radius-nan", lambda: sweep(radii=[math.nan]), ValueError,
         r"radii must be finite ratios r/r_ref > 0, e\.g\. radii=\[0\.5, 1, 2\]"),
    case("radius_sweep-radius-zero", lambda: sweep(radii=[0.0]), ValueError,
         r"radii must be finite ratios r/r_ref > 0"),
    case("radius_sweep-radius-negative", lambda: sweep(radii=[1.0, -2.0]), ValueError,
         r"radii must be finite ratios r/r_ref > 0"),
    case("radius_sweep-dims-zero", lambda: sweep(dims=(0,)), ValueError,
         r"dims must be integers in \[1, D=43\]"),
    case("radius_sweep-dims-above-D", lambda: sweep(dims=(2, 44)), ValueError,
         r"dims must be integers in \[1, D=43\]"),
    case("radius_sweep-reference-unknown", lambda: sweep(reference="glorot"), ValueError,
         r"reference must be one of"),
    case("radius_sweep-X-nan", lambda: sweep(X_=X_NAN), ValueError, r"X contains NaN"),
    case("radius_sweep-projection-unknown", lambda: sweep(projection="gaussian"), ValueError,
         r"projection must be one of"),
    case("radius_sweep-X-wrong-shape", lambda: sweep(X_=X[:, :3]), ValueError,
         r"could not process X"),
    case("radius_sweep-max_samples-negative",
         lambda: radius_sweep(net(), X, Y, radii=[1.0], dims=(2,), max_samples=-5,
                              progress=False),
         ValueError, r"max_samples must be a positive int or None, got -5"),
    case("radius_sweep-max_samples-hides-a-length-mismatch",
         lambda: radius_sweep(net(), X, Y[:10], radii=[1.0], dims=(2,), max_samples=5,
                              progress=False),
         ValueError, r"X has 24 samples but y has 10"),
    case("radius_sweep-radius_batch-zero",
         lambda: radius_sweep(net(), X, Y, radii=[1.0], dims=(2,), radius_batch=0,
                              progress=False),
         ValueError, r"radius_batch must be a positive int or None, got 0"),
    case("i17-sweep-progress-truthy-string", lambda: sweep(progress="no"), TypeError,
         r"progress must be True or False"),
    case("i17-sweep-n_subspaces-string", lambda: sweep(n_subspaces="2"), ValueError,
         r"n_subspaces must be an int >= 1, got '2'"),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
