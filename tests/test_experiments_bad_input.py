"""Bad-input rows for the experiments (goldisk/experiments/: subspace_train, trajectory).

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _bad_input_cases import OK, X, Y, case, net, run_row

from goldisk.experiments import subspace_train, trajectory


def _no_unit(rows):
    raise AssertionError(f"a unit ran before the bad setting was refused: {rows}")


CASES = [
    case("subspace_train-label-outside-the-logits",
         lambda: subspace_train(net(), X, Y, X, np.where(Y == 2, 5, Y), radii=[1.0],
                                dims=(2,), n_repeats=1, epochs=1, progress=False),
         ValueError, r"y_val: y has labels in \[0, 5\] but model returns 3 logits"),
    case("trajectory-label-outside-the-logits",
         lambda: trajectory(net(), X, Y + 1, X, Y, radii=[1.0], n_repeats=1, epochs=1,
                            progress=False),
         ValueError, r"y has labels in \[1, 3\] but model returns 3 logits"),
    case("trajectory-n_repeats-zero",
         lambda: trajectory(net(), X, Y, X, Y, radii=[1.0], n_repeats=0, epochs=1,
                            progress=False),
         ValueError, r"n_repeats must be a positive integer, got 0"),
    case("trajectory-lr-nan",
         lambda: trajectory(net(), X, Y, X, Y, radii=[1.0], n_repeats=1, epochs=1,
                            lr=math.nan, progress=False),
         ValueError, r"lr must be finite and > 0, got nan"),
    case("subspace_train-lr-zero-refused-before-the-first-unit",
         lambda: subspace_train(net(), X, Y, X, Y, radii=[1.0], dims=(2,), n_repeats=1,
                                epochs=1, lr=0, progress=False, on_result=_no_unit),
         ValueError, r"lr must be finite and > 0, got 0"),
    case("subspace_train-batch_size-fraction",
         lambda: subspace_train(net(), X, Y, X, Y, radii=[1.0], dims=(2,), n_repeats=1,
                                epochs=1, batch_size=2.5, progress=False),
         ValueError, r"batch_size must be a positive integer, got 2.5"),
    case("trajectory-lr-none",
         lambda: trajectory(net(), X, Y, X, Y, radii=[1.0], n_repeats=1, epochs=1, lr=None,
                            progress=False),
         ValueError, r"lr must be finite and > 0, got None"),
    case("subspace_train-lr-as-a-0d-tensor",
         lambda: subspace_train(net(), X, Y, X, Y, radii=[1.0], dims=(2,), n_repeats=1,
                                epochs=0, lr=torch.tensor(0.01), progress=False), OK,
         check=lambda df: len(df) > 0),
    case("subspace_train-full_lr-negative",
         lambda: subspace_train(net(), X, Y, X, Y, radii=[1.0], dims=(2,), n_repeats=1,
                                epochs=1, full_lr=-1.0, progress=False),
         ValueError, r"full_lr must be finite and > 0, got -1.0"),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
