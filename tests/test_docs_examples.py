"""The code blocks of docs/user_guide.md run, and docs/api.md covers the public API."""

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import goldisk
import goldisk.callbacks
import goldisk.estimators

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(path: Path) -> list[str]:
    """The ```python fenced blocks of a markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("page", ["user_guide.md", "api.md", "../README.md"])
def test_code_blocks_run(page, capsys):
    blocks = python_blocks(DOCS / page)
    assert blocks, f"no python blocks in {page}"
    namespace = {"__name__": f"docs_{page}"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page}[block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message says which block
            raise AssertionError(f"{page}, block {i} failed:\n{block}") from exc
    if page == "../README.md":
        assert namespace["res"].H.shape == (50, 50) and len(namespace["grid"].param_grid) == 2
        # the prose: the scikit-learn block, as written (lr=None), reaches >= 0.85 CV
        # accuracy and prints a finite curvature column for every grid point
        grid = namespace["grid"]
        assert grid.best_score_ >= 0.85, grid.best_score_
        assert np.isfinite(grid.cv_results_["mean_test_curv"]).all()
        assert "best CV accuracy" in capsys.readouterr().out
    if page == "user_guide.md":
        assert namespace["grid"].best_params_ and len(namespace["results"]) == 6
        sel = namespace["selector"]  # the prose: the default picks the lowest loss
        assert sel.best_index_ == sel.candidates_["loss"].idxmin() and len(sel.candidates_) == 4


def test_api_reference_covers_public_names_and_parameters():
    text = (DOCS / "api.md").read_text()
    names = set(goldisk.__all__) | set(goldisk.estimators.__all__) | set(
        goldisk.callbacks.__all__)
    missing = sorted(n for n in names if f"`{n}" not in text)
    assert not missing, f"not in docs/api.md: {missing}"
    for cls in (goldisk.GoldilocksClassifier, goldisk.GoldilocksRegressor,
                goldisk.InitScaler, goldisk.SubspaceProjector, goldisk.CurvatureProbe,
                goldisk.GoldilocksSelector, *(getattr(goldisk.callbacks, n) for n in (
                    "RadiusTracker", "CurvatureTracker", "ZeroLogitTracker",
                    "NonFiniteStopper"))):
        heading = next(line for line in text.splitlines() if f"`{cls.__name__}(" in line)
        for param in inspect.signature(cls).parameters:
            if param != "kwargs":
                assert param in heading, f"{cls.__name__}: {param} undocumented"
