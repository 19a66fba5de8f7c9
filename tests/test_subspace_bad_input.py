"""Bad-input rows for SubspaceModule (goldisk/_subspace.py).

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import numpy as np
import pytest
from _bad_input_cases import OK, D, case, net, proj, run_row, zero_net
from torch import nn

from goldisk import SubspaceModule

CASES = [
    case("SubspaceModule-kind-unknown", lambda: SubspaceModule(net(), proj(), kind="ball"),
         ValueError, r"kind must be one of \('hyperplane', 'hypersphere'\)"),
    case("SubspaceModule-module-without-parameters", lambda: SubspaceModule(
        nn.Flatten(), proj()), ValueError, r"module has no parameters"),
    case("SubspaceModule-projection-D-mismatch", lambda: SubspaceModule(net(), proj(D_=10)),
         ValueError, r"projection maps to D=10 but the module has D=43.*D=<number of "),
    case("SubspaceModule-hypersphere-radius-zero", lambda: SubspaceModule(
        zero_net(), proj(), kind="hypersphere"), ValueError, r"radius 0; initialize the module"),
    case("i17-c12-SubspaceModule-ndarray", lambda: SubspaceModule(net(), np.eye(D)[:, :3]),
         OK, check=lambda m: m.d == 3),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
