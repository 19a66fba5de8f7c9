"""Bad-input rows for the datasets (goldisk/datasets.py).

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import math

import pytest
from _bad_input_cases import case, run_row

from goldisk.datasets import load_dataset, load_torchvision, make_circles3

CASES = [
    case("datasets-root-missing", lambda: load_torchvision("mnist", "/nonexistent/goldisk"),
         ValueError, r"root='/nonexistent/goldisk' does not exist.*download=True"),
    case("datasets-root-none", lambda: load_torchvision("cifar10", None), ValueError,
         r"root is required to load 'cifar10'"),
    case("datasets-name-unknown", lambda: load_dataset("iris"), ValueError,
         r"unknown dataset 'iris'; valid names are digits"),
    case("datasets-circles-too-few", lambda: make_circles3(2), ValueError,
         r"n_samples must be at least 3"),
    case("datasets-circles-noise-nan", lambda: make_circles3(30, noise=math.nan), ValueError,
         r"noise must be a finite number >= 0.*noise=0\.05"),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
