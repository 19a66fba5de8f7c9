"""Results I/O shared by the experiments and the command-line tool: strict JSON written
atomically, resumable CSVs appended unit by unit (every row verified by its digest), the
environment stored with each result, and which settings may differ on a resume.

It lives on the lowest floor (beside ``_names``) and imports nothing heavy at module level,
so the CLI's parser can import it without loading torch, and ``experiments`` never has to
import from ``cli``.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import math
import os
import platform
import sys
from pathlib import Path

__all__ = ["EXECUTION_ONLY", "CLIError", "append_rows", "changed_settings", "check_output_path",
           "check_path", "environment", "read_config", "read_written_rows", "remove_rows",
           "write_json", "write_rows"]

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


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def check_output_path(out: str) -> None:
    """Refuse an ``--out`` that cannot be a folder before anything is loaded: one below a
    regular file (``afile/run``) or in a place that cannot be written (``/proc/x``)."""
    path = Path(out).absolute()
    if path.exists():
        if not path.is_dir():
            raise CLIError(f"--out {out} exists and is not a folder; choose another path")
        if not os.access(path, os.W_OK | os.X_OK):
            raise CLIError(f"--out {out} is not writable; choose a writable folder")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CLIError(f"--out {out} lies below {parent}, which is a file, not a folder; "
                       "choose another path")
    probe = parent / f".goldisk-write-test-{os.getpid()}"
    try:  # (os.access says yes for root, also where nothing can be created, e.g. /proc)
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise CLIError(f"--out {out} cannot be created in {parent} "
                       f"({exc.strerror or exc}); choose a writable folder") from None


def check_path(path: Path) -> Path:
    """The file of digests next to a results CSV: one per row written whole."""
    return path.with_name(path.name + ".check")


def _digest(line: str) -> str:
    return hashlib.blake2b(line.rstrip("\r\n").encode("utf-8"), digest_size=8).hexdigest()


def _append_synced(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def append_rows(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Append rows to a CSV in one write, flushed to disk (a header if the file is new),
    then their digests to ``<csv>.check``: a row counts as written only once its digest
    is there too (see :func:`read_written_rows`)."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=columns)
    new = not path.exists() or path.stat().st_size == 0
    text = df.to_csv(index=False, header=new)
    _append_synced(path, text)
    lines = text.splitlines()[1 if new else 0:]
    _append_synced(check_path(path), "".join(_digest(line) + "\n" for line in lines))


def write_rows(path: Path, df) -> None:
    """Replace a results CSV by ``df`` (and its digests), each file written atomically."""
    text = df.to_csv(index=False)
    for target, content in ((path, text), (check_path(path), "".join(
            _digest(line) + "\n" for line in text.splitlines()[1:]))):
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, target)


def remove_rows(path: Path) -> None:
    """Delete a results CSV and its digests (a fresh start)."""
    for target in (path, check_path(path)):
        if target.exists():
            target.unlink()


def read_config(path: Path) -> dict:
    """A stored ``config.json`` for ``--resume``; a damaged one is a ``CLIError`` naming it."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CLIError(f"--resume: {path} cannot be read ({type(exc).__name__}: {exc}); "
                       "repair or delete it, or start afresh with --force") from None
    if not isinstance(cfg, dict):
        raise CLIError(f"--resume: {path} holds no settings object; repair or delete it, or "
                       "start afresh with --force")
    return cfg


def read_written_rows(path: Path):
    """The rows of a results CSV that were written whole, as a DataFrame (empty if none).

    Every row is verified against its digest in ``<csv>.check`` (written after the row):
    a row whose text differs from what was written by goldisk (a line cut short, even if
    then ended by an editor or ``echo >>``; an edited value; stray text) or whose digest
    never got written (a killed run) is dropped, so it is recomputed, never kept. A CSV
    without a ``.check`` file (written by goldisk < 0.5) falls back to the older rule:
    dropped are a last line cut short and any line whose number of fields is not the
    header's.
    """
    import csv

    import pandas as pd

    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.endswith("\n"):  # a partial last line from a killed write
        text = text[: text.rfind("\n") + 1]
    lines = text.splitlines(keepends=True)
    if len(lines) < 2:
        return pd.DataFrame()
    width = len(next(csv.reader(lines[:1])))
    whole = [line for line in lines[1:] if len(next(csv.reader([line]), [])) == width]
    check = check_path(path)
    if check.exists():
        digests = set(check.read_text(encoding="utf-8", errors="replace").split())
        whole = [line for line in whole if _digest(line) in digests]
    return pd.read_csv(io.StringIO(lines[0] + "".join(whole))) if whole else pd.DataFrame()
