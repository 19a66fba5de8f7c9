"""Bad-input rows for make_projection and the projections (goldisk/projections/).

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _bad_input_cases import case, run_row

from goldisk.projections import make_projection

CASES = [
    case("make_projection-kind-unknown", lambda: make_projection("gaussian", 10, 2), ValueError,
         r"kind must be one of \['dense'"),
    case("make_projection-d-zero", lambda: make_projection("dense", 10, 0), ValueError,
         r"d must be an int in \[1, D=10\], got d=0"),
    case("make_projection-d-above-D", lambda: make_projection("sparse", 10, 11), ValueError,
         r"d must be an int in \[1, D=10\], got d=11"),
    case("make_projection-D-zero", lambda: make_projection("dense", 0, 1), ValueError,
         r"D must be an int >= 1"),
    case("make_projection-metric-length", lambda: make_projection(
        "dense", 10, 2, metric=np.ones(3)), ValueError, r"metric must be a 1-D array of length "
                                                         r"D=10"),
    case("make_projection-random_state-2**64",
         lambda: make_projection("sparse", 100, 3, random_state=2**64), ValueError,
         r"random_state must be an int below 2\*\*64"),
    case("projection-integer-theta",
         lambda: make_projection("sparse", 100, 3, random_state=0)(torch.ones(3, dtype=torch.long)),
         TypeError, r"theta has dtype torch.int64 .* cast theta with theta.to\(torch.float64\)"),
    case("i17-c14-make_projection-device-gpu", lambda: make_projection(
        "dense", 10, 2, device="gpu"), ValueError, r"device must be a torch device.*'gpu'"),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
