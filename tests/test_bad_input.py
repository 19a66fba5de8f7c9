"""The bad-input table as a whole.

The rows live next to the module they test, in ``tests/test_<module>_bad_input.py``
(the row format and the runner in ``tests/_bad_input_cases.py``); this gathers every
file's ``CASES`` and checks the table: ids unique across files, enough bad inputs and
enough command lines.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from _bad_input_cases import OK, Cli

CASES = [row for path in sorted(Path(__file__).parent.glob("test_*_bad_input.py"))
         for row in importlib.import_module(path.stem).CASES]


def test_table_is_large_enough():
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids))
    bad = [p for p in CASES if p.values[1] is not OK and not p.marks]
    assert len(bad) >= 40
    assert sum(isinstance(p.values[0], Cli) for p in CASES) >= 20
