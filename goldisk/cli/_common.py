"""Shared pieces of the command-line tool: common options, output folders, environment."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

from .._results_io import CLIError, changed_settings, check_output_path, environment, write_json  # noqa: F401 (re-exported)
from ._data import (  # noqa: F401 (dataset_kwargs is re-exported)
    DATASETS,
    add_data_arguments,
    check_data_arguments,
    dataset_kwargs,
)
from ._data import load_data as _load_data

__all__ = [
    "CLIError",
    "add_common_arguments",
    "prepare_output",
    "environment",
    "write_json",
    "check_output_path",
    "load_data",
    "dataset_kwargs",
    "parse_floats",
    "parse_ints",
    "add_model_choice",
    "data_and_model",
    "add_backend_arguments",
    "parallel_backend",
    "check_backend_arguments",
    "check_common_arguments",
]



def _parse_list(text: str, name: str, kind, example: str) -> list:
    try:
        vals = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"{name} must be comma-separated {example}; got {text!r}") from None
    if not vals:
        raise CLIError(f"{name} is empty; give at least one value")
    return vals


def parse_floats(text: str, name: str) -> list[float]:
    return _parse_list(text, name, float, "numbers, e.g. 0.5,1,2")


def parse_ints(text: str, name: str) -> list[int]:
    return _parse_list(text, name, int, "integers, e.g. 10,50,100")


def add_model_choice(p, hidden: str = "32,32", why: str = "") -> None:
    """``--model`` and ``--hidden`` (the MLP's widths), their defaults (and ``why`` that
    default) in the help."""
    from .._names import MODEL_NAMES

    p.add_argument("--model", default="mlp", choices=MODEL_NAMES,
                   help="architecture (default: %(default)s)")
    p.add_argument("--hidden", default=hidden,
                   help=f"MLP widths (default: %(default)s{why})")


def data_and_model(args):
    """``(dataset, model)``: the data options' dataset and the ``--model`` (``--hidden``,
    ``--activation``, ``--no-bias``) for it, the model options checked before loading."""
    from ..models import make_model

    kwargs = {"activation": args.activation, "bias": not args.no_bias}
    if args.model == "mlp":
        kwargs["hidden"] = tuple(parse_ints(args.hidden, "--hidden"))
        if min(kwargs["hidden"]) < 1:
            raise CLIError(f"--hidden widths must be >= 1, got {args.hidden}")
    ds = load_data(args)
    try:
        return ds, make_model(args.model, ds.X.shape[1], ds.n_classes, **kwargs)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"--model {args.model}: {exc}") from None


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
    if getattr(args, "out", None):
        check_output_path(args.out)


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
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"--out {out} cannot be created ({exc.strerror or exc}); choose a "
                       "writable folder") from None
    return path


def load_data(args):
    """The dataset named by ``--dataset`` (or ``--data``) as a goldisk Dataset
    (``--max-samples`` applied), after the common options are checked."""
    check_common_arguments(args)
    return _load_data(args)


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
            # every large temporary back to the kernel, which slowed a sweep down per worker
            # (docs/performance.md). Also keep it out of this process's env.
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
