"""Bad-input rows for radius, reference_radius, rescale_ and SoftmaxTemperature
(goldisk/_radius.py).

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import math

import pytest
from _bad_input_cases import case, net, run_row, zero_net
from torch import nn

from goldisk import SoftmaxTemperature, radius, reference_radius, rescale_

CASES = [
    case("radius-all-frozen", lambda: radius(net().requires_grad_(False)), ValueError,
         r"no trainable parameter to measure.*requires_grad_\(True\)"),
    case("reference_radius-unknown", lambda: reference_radius(net(), "glorot"), ValueError,
         r"reference must be one of \('xavier'"),
    case("reference_radius-no-layers", lambda: reference_radius(nn.Flatten()), ValueError,
         r"no trainable Linear or Conv layer.*reference='current'"),
    case("radius-module-without-parameters", lambda: radius(nn.ReLU()), ValueError,
         r"module has no parameters to measure; pass a module with at least one trainable"),
    case("rescale-target-negative", lambda: rescale_(net(), -1.0), ValueError,
         r"target radius must be finite and > 0, got -1"),
    case("rescale-target-zero", lambda: rescale_(net(), 0.0), ValueError,
         r"target radius must be finite and > 0, got 0"),
    case("rescale-target-nan", lambda: rescale_(net(), math.nan), ValueError,
         r"target radius must be finite and > 0, got nan"),
    case("rescale-target-inf", lambda: rescale_(net(), math.inf), ValueError,
         r"target radius must be finite and > 0, got inf"),
    case("rescale-mode-unknown", lambda: rescale_(net(), 1.0, mode="per_neuron"), ValueError,
         r"mode must be 'global' or 'per_layer'"),
    case("rescale-module-at-zero", lambda: rescale_(zero_net(), 1.0), ValueError,
         r"radius is 0; initialize it first"),
    case("temperature-zero", lambda: SoftmaxTemperature(net(), 0.0), ValueError,
         r"temperature must be finite and > 0"),
    case("i17-SoftmaxTemperature-string", lambda: SoftmaxTemperature(net(), "2"), TypeError,
         r"temperature must be a real number, got '2'"),
    case("i17-radius-weights_only-string", lambda: radius(net(), weights_only="yes"),
         TypeError, r"weights_only must be True or False"),
    case("i17-rescale-target-string", lambda: rescale_(net(), "2"), TypeError,
         r"target must be a real number, got '2'"),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
