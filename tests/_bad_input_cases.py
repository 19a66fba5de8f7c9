"""The bad-input table's shared part: tiny data and models, the row format, the runner.

The rows live next to the module they test, in ``tests/test_<module>_bad_input.py``; each
file holds a ``CASES`` list of ``case(...)`` rows and runs them with :func:`run_row`.
Every row names a bad input and what it must give: a ``ValueError`` / ``TypeError``
whose message names the parameter and the fix (``match=``), raised from goldisk,
scikit-learn or skorch validation code (never from deep inside torch); or, for the CLI,
exit status 2 with one readable stderr line naming the option and nothing written to the
output folder (no CSV, PNG or JSON). A few rows are inputs that must simply work
(pandas, float16, unseen labels in ``score``). ``case(..., xfail=...)`` marks a known
gap (none at present); ``docs/reliability.md`` describes each.
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from goldisk import GoldilocksClassifier, GoldilocksRegressor
from goldisk.cli import main
from goldisk.models import MLP
from goldisk.projections import make_projection
from goldisk.sweep import radius_sweep

# ---------------------------------------------------------------- tiny data and models
_rng = np.random.default_rng(0)
X = _rng.normal(size=(24, 4)).astype(np.float32)
Y = np.arange(24) % 3
X_NAN = X.copy()
X_NAN[0, 0] = np.nan
X_INF = X.copy()
X_INF[1, 2] = np.inf
D = 4 * 5 + 5 + 5 * 3 + 3  # MLP(4, (5,), 3)


def net():
    torch.manual_seed(0)
    return MLP(4, (5,), 3)


def zero_net():
    m = net()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m


def proj(d=3, D_=D):
    return make_projection("dense", D_, d, random_state=0)


def clf(**kw):
    params = dict(module__hidden=(5,), max_epochs=1, random_state=0)
    params.update(kw)
    return GoldilocksClassifier(MLP, **params)


def reg(**kw):
    params = dict(module__hidden=(5,), max_epochs=1, random_state=0)
    params.update(kw)
    return GoldilocksRegressor(MLP, **params)


@functools.lru_cache(maxsize=1)
def _fitted():
    return clf().fit(X, Y)


def fitted():
    import copy

    return copy.deepcopy(_fitted())


def sweep(model=None, X_=X, y_=Y, **kw):
    params = dict(radii=[1.0], dims=(2,), n_subspaces=1, progress=False)
    params.update(kw)
    return radius_sweep(net() if model is None else model, X_, y_, **params)


X_REV = X[::-1]          # negative row stride
X_COLREV = X[:, ::-1]    # negative column stride
Y_REV = Y[::-1]


# ---------------------------------------------------------------- the row format
OK = "ok"  # the input must be accepted


@dataclass
class Cli:
    """A `goldisk` command line; ``{out}`` is replaced by a fresh output folder."""

    argv: list
    setup: object = None  # callable(out_path) run before the command
    keep: tuple = field(default_factory=tuple)  # files the setup wrote, allowed to stay


TINY = ["--radii", "1", "--dims", "2", "--n-subspaces", "1", "--hessian-samples", "20",
        "--hidden", "4", "--no-progress"]


def case(id, target, expect, match=None, *, check=None, xfail=None):
    marks = [pytest.mark.xfail(reason=xfail, strict=False)] if xfail else []
    return pytest.param(target, expect, match, check, id=id, marks=marks)


# ---------------------------------------------------------------- the runner
def _innermost_file(tb) -> str:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "" if tb is None else tb.tb_frame.f_code.co_filename


def _from_inside_torch(exc) -> bool:
    """Whether ``exc`` (or the exception it was raised from) was raised in torch's code."""
    inside = f"{os.sep}torch{os.sep}"
    return any(inside in _innermost_file(e.__traceback__)
               for e in (exc, exc.__cause__) if e is not None)


def _run_cli(cli: Cli, out, tmp_path, capsys):
    if cli.setup is not None:
        cli.setup(out)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in cli.argv]
    capsys.readouterr()
    try:
        code = main(["sweep", "--out", str(out), *TINY, *argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


def run_row(target, expect, match, check, tmp_path, capsys):
    """Run one row: ``target`` must raise ``expect`` matching ``match``, be accepted
    (``expect is OK``, then ``check(result)``), or, for a :class:`Cli`, exit ``expect``."""
    if isinstance(target, Cli):
        if "cuda" in " ".join(target.argv) and torch.cuda.is_available():
            pytest.skip("a CUDA device is available")
        if "mps" in target.argv and torch.backends.mps.is_available():
            pytest.skip("an MPS device is available")
        out = tmp_path / "out"
        code, err = _run_cli(target, out, tmp_path, capsys)
        assert code == expect
        assert len(err) == 1, err
        assert err[0].startswith("goldisk sweep: error: ")
        assert re.search(match, err[0]), err[0]
        assert "Traceback" not in err[0]
        written = [p.name for p in out.rglob("*")] if out.is_dir() else []
        assert [n for n in written if n not in target.keep] == []
        assert not any(n.endswith((".csv", ".png", ".json", ".tmp")) for n in written
                       if n not in target.keep)
        return
    if expect is OK:
        result = target()
        assert check is None or check(result)
        return
    with pytest.raises(expect, match=match) as excinfo, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # e.g. numpy's overflow in a cast
        target()
    # ours (or scikit-learn's / skorch's validation), not a shape error from inside torch
    assert not _from_inside_torch(excinfo.value), excinfo.getrepr()
