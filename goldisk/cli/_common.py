"""Shared pieces of the command-line tool: common options, output folders, environment."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import platform
import shutil
import sys
from pathlib import Path

from ._data import (  # noqa: F401 (load_data and dataset_kwargs are re-exported)
    DATASETS,
    add_data_arguments,
    check_data_arguments,
    dataset_kwargs,
    load_data,
)

__all__ = [
    "CLIError",
    "add_common_arguments",
    "prepare_output",
    "environment",
    "write_json",
    "append_rows",
    "load_data",
    "dataset_kwargs",
    "parse_floats",
    "parse_ints",
    "add_backend_arguments",
    "parallel_backend",
    "check_backend_arguments",
    "check_common_arguments",
]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def parse_floats(text: str, name: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        msg = f"{name} must be comma-separated numbers, e.g. 0.5,1,2; got {text!r}"
        raise CLIError(msg) from None
    if not vals:
        raise CLIError(f"{name} is empty; give at least one value")
    return vals


def parse_ints(text: str, name: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        msg = f"{name} must be comma-separated integers, e.g. 10,50,100; got {text!r}"
        raise CLIError(msg) from None
    if not vals:
        raise CLIError(f"{name} is empty; give at least one value")
    return vals


def _one_line_errors(parser) -> None:
    """Make ``parser`` report a usage error as one line (``prog: error: ...``), exit 2."""

    def error(message):
        print(f"{parser.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = error


def check_device(name: str) -> None:
    """``--device`` must name a torch device that holds data and is usable here."""
    from .._validation import check_device as check

    try:
        check(name, "--device")
    except ValueError as exc:
        raise CLIError(str(exc).rstrip(".")) from None


def check_common_arguments(args) -> None:
    """Validate --seed, --device and --max-samples before anything is loaded or written;
    resolve the data options (``--dataset`` is "file" with ``--data``, else "digits")."""

    check_data_arguments(args)
    if args.seed < 0:
        raise CLIError(f"--seed must be an int >= 0, got {args.seed}")
    check_device(args.device)
    if args.max_samples is not None and args.max_samples < 1:
        raise CLIError(f"--max-samples must be >= 1, got {args.max_samples}")


def add_common_arguments(p, out_default: str) -> None:
    _one_line_errors(p)
    p.add_argument("--out", default=out_default, help="output folder (default: %(default)s)")
    add_data_arguments(p)
    p.add_argument("--data-root", default=None, help="local folder of torchvision datasets")
    p.add_argument("--download", action="store_true", help="download the dataset if missing")
    p.add_argument("--max-samples", type=int, default=None,
                   help="use the first N samples of the training split (default: all; "
                        "torchvision datasets are standardized with the whole split's "
                        "per-channel statistics first)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


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


def _written_by_goldisk(path: Path) -> bool:
    """Whether ``path`` (or, for ``reproduce``, a sub-folder) holds a goldisk config.json."""
    for cfg in [path / "config.json", *path.glob("*/config.json")]:
        try:
            if "command" in json.loads(cfg.read_text(encoding="utf-8")):
                return True
        except (OSError, ValueError):
            continue
    return False


def _check_replaceable(path: Path, out: str) -> None:
    """``--force`` deletes ``path``: only a goldisk output folder, never one that holds the
    current folder or the home folder."""
    here, target = Path.cwd().resolve(), path.resolve()
    if target == here or target in here.parents or target in (Path.home().resolve(),
                                                               Path(target.anchor)):
        raise CLIError(f"--out {out} is the current folder, one above it or the home folder; "
                       "--force would delete it: choose a sub-folder such as out/run")
    if not _written_by_goldisk(path):
        raise CLIError(f"--out {out} holds files goldisk did not write (no goldisk "
                       "config.json); --force only replaces goldisk output folders: choose "
                       "another --out, or empty it yourself")


def prepare_output(out: str, force: bool, resume: bool) -> Path:
    """Create ``out``; refuse an existing non-empty folder unless ``force`` or ``resume``."""
    path = Path(out)
    if force and resume:
        raise CLIError("--force and --resume exclude each other; pick one")
    if path.exists() and not path.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder; choose another path")
    if path.exists() and any(path.iterdir()):
        if force:
            _check_replaceable(path, out)
            shutil.rmtree(path)
        elif not resume:
            raise CLIError(
                f"--out {out} already exists; pass --resume to continue it or --force to "
                "overwrite it"
            )
    path.mkdir(parents=True, exist_ok=True)
    return path


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


def add_backend_arguments(p) -> None:
    p.add_argument("--n-jobs", type=int, default=1,
                   help="points computed in parallel (default: %(default)s; -1: all cores)")
    p.add_argument("--backend", default="loky", choices=("loky", "dask", "ray"),
                   help="joblib backend for --n-jobs (default: %(default)s)")
    p.add_argument("--scheduler", default=None,
                   help="address of a running cluster: a dask scheduler (tcp://host:8786) "
                        "or a ray head (host:6379 or 'auto'); default: start a local one")


def check_backend_arguments(args) -> None:
    """Validate --n-jobs/--backend/--scheduler before anything is written."""
    if args.n_jobs == 0 or args.n_jobs < -1:
        raise CLIError(f"--n-jobs must be >= 1 or -1, got {args.n_jobs}")
    if args.backend == "loky" and args.scheduler:
        raise CLIError("--scheduler needs --backend dask or --backend ray")


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (a ``CLIError`` within ``timeout`` s) when ``address`` names a host and port
    that accept no TCP connection; Ray would otherwise retry for minutes. Addresses without
    a port (``auto``, ``local``) are left to the backend."""
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        host, port = parts.hostname, parts.port
    except ValueError:  # e.g. a port that is not a number: the backend's own message
        return
    if not host or port is None:
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise CLIError(f"--scheduler {address}: nothing accepts connections at {host}:{port} "
                       f"({exc}); start the scheduler or head node first, or leave "
                       "--scheduler out for a local cluster") from None


@contextlib.contextmanager
def parallel_backend(args):
    """Run the enclosed joblib work on ``--backend`` (connecting to ``--scheduler``)."""
    import joblib

    check_backend_arguments(args)
    if args.scheduler:
        check_reachable(args.scheduler)
    if args.backend == "loky":
        with joblib.parallel_config(backend="loky"):
            yield
        return
    if args.backend == "dask":
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise CLIError("--backend dask needs dask.distributed: pip install "
                           "'goldisk[distributed]'") from None
        if args.scheduler:
            try:
                client, cluster = Client(args.scheduler), None
            except (OSError, TimeoutError, ValueError) as exc:  # unreachable or malformed
                raise CLIError(f"--scheduler {args.scheduler}: no dask scheduler reachable "
                               f"there ({type(exc).__name__}: {exc}); start one with "
                               "`dask scheduler` or leave --scheduler out for a local "
                               "cluster") from None
        else:
            import dask

            workers = os.cpu_count() if args.n_jobs == -1 else args.n_jobs
            # dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc give
            # every large temporary back to the kernel: a sweep ran 1.6-2x slower per worker
            # (benchmarks/bench_distributed.py). Also keep it out of this process's env.
            key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
            saved = dict(os.environ)
            with dask.config.set({key: None}):
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
            for name in set(os.environ) - set(saved):
                del os.environ[name]
            os.environ.update(saved)
            client = Client(cluster)
        try:
            with joblib.parallel_config(backend="dask"):
                yield
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise CLIError("--backend ray needs ray: pip install 'goldisk[distributed]'") from None
    register_ray()
    if args.scheduler:
        try:
            ray.init(address=args.scheduler, ignore_reinit_error=True, log_to_driver=False)
        except (OSError, TimeoutError, ValueError, RuntimeError) as exc:
            raise CLIError(f"--scheduler {args.scheduler}: no Ray cluster reachable there "
                           f"({type(exc).__name__}: {exc}); start one with `ray start "
                           "--head` or leave --scheduler out for a local one") from None
    else:
        workers = os.cpu_count() if args.n_jobs == -1 else args.n_jobs
        ray.init(num_cpus=workers, include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False)
    try:
        with joblib.parallel_config(backend="ray"):
            yield
    finally:
        ray.shutdown()
