"""Results I/O shared by the experiments and the command-line tool: strict JSON written
atomically, resumable CSVs appended unit by unit, the environment stored with each result,
and which settings may differ on a resume.

It lives on the lowest floor (beside ``_names``) and imports nothing heavy at module level,
so the CLI's parser can import it without loading torch, and ``experiments`` never has to
import from ``cli``.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import platform
import sys
from pathlib import Path

__all__ = ["EXECUTION_ONLY", "append_rows", "changed_settings", "environment",
           "read_written_rows", "write_json"]

#: Options that say how a run executes, not what it computes: a run may be resumed with
#: other values (``n_jobs`` changes sums' order, hence the last bits, not the results).
EXECUTION_ONLY = frozenset({"out", "resume", "force", "no_progress", "backend", "scheduler",
                            "download",
                            "n_jobs", "func", "environment", "seconds", "seconds_total", "rows",
                            "summary"})


def changed_settings(old: dict, new: dict) -> list[str]:
    """Settings of ``new`` (a run's config) that differ from the stored ``old`` one (those
    present in both: an option added by a later goldisk version does not block a resume)."""
    keys = (set(old) & set(new)) - EXECUTION_ONLY
    return sorted(k for k in keys if old.get(k) != new.get(k))


def environment(device: str = "cpu") -> dict:
    """Versions and machine facts stored next to every result."""
    import sklearn
    import torch

    import goldisk

    env = {
        "goldisk": goldisk.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": importlib.import_module("numpy").__version__,
        "scikit-learn": sklearn.__version__,
        "device": device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _strict(obj):
    """``obj`` with every NaN or infinite float as ``None``: strict JSON (RFC 8259) has no
    NaN, and ``json.dumps`` would write a bare ``NaN`` that jq or JavaScript reject."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy / torch scalars
        return _strict(obj.item())
    return obj


def write_json(path: Path, obj) -> None:
    """Write strict JSON (NaN and infinities as null) atomically (temporary file, then
    rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_strict(obj), indent=2, default=str, allow_nan=False))
    os.replace(tmp, path)


def append_rows(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Append rows to a CSV in one write, flushed to disk (a header if the file is new)."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=columns)
    new = not path.exists() or path.stat().st_size == 0
    text = df.to_csv(index=False, header=new)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_written_rows(path: Path):
    """The rows of a results CSV that were written whole, as a DataFrame (empty if none).

    Dropped: a last line cut short by a killed write, and any line whose number of fields
    is not the header's (a line cut short and then ended by an editor, stray text).
    """
    import csv

    import pandas as pd

    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):  # a partial last line from a killed write
        text = text[: text.rfind("\n") + 1]
    lines = text.splitlines(keepends=True)
    if len(lines) < 2:
        return pd.DataFrame()
    width = len(next(csv.reader(lines[:1])))
    whole = [line for line in lines[1:] if len(next(csv.reader([line]), [])) == width]
    return pd.read_csv(io.StringIO(lines[0] + "".join(whole))) if whole else pd.DataFrame()
