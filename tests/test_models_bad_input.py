"""Bad-input rows for the models (goldisk/models.py).

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import pytest
from _bad_input_cases import OK, case, net, run_row

from goldisk.models import MLP, LeNet5, SmallCNN, init_weights_, make_model

CASES = [
    case("models-MLP-hidden-negative", lambda: MLP(4, (-1,), 3), ValueError,
         r"hidden must be int\(s\) >= 1, got hidden=\(-1,\)"),
    case("models-MLP-in_features-zero", lambda: MLP(0, (3,), 3), ValueError,
         r"in_features must be int\(s\) >= 1"),
    case("models-MLP-activation-unknown", lambda: MLP(4, (3,), 3, activation="gelu"),
         ValueError, r"activation must be one of \['relu', 'tanh'\]"),
    case("models-SmallCNN-channels-zero", lambda: SmallCNN(channels=(0,)), ValueError,
         r"channels must be int\(s\) >= 1"),
    case("models-LeNet5-image_size", lambda: LeNet5(image_size=30), ValueError,
         r"image_size must be 28 or 32"),
    case("models-make_model-unknown", lambda: make_model("resnet", 4, 3), ValueError,
         r"unknown model name 'resnet'; valid names are mlp"),
    case("models-init_weights_-unknown", lambda: init_weights_(net(), "glorot"), ValueError,
         r"unknown init scheme 'glorot'; valid schemes are xavier"),
    case("models-MLP-bias-string", lambda: MLP(4, (3,), 3, bias="no"), TypeError,
         r"bias must be True or False, got bias='no'"),
    case("models-MLP-hidden-int", lambda: MLP(4, 3, 3), OK,
         check=lambda m: m.hidden == (3,)),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
