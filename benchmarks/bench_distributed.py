"""Radius sweep on 1 and 2 workers: joblib loky, a dask LocalCluster and Ray, side by side.

The same sweep (``goldisk.sweep.radius_sweep``, same seeds) runs

* in-process, ``n_jobs=1``, one torch thread: the serial baseline;
* for each backend and each worker count ``w`` (default 1 and 2), exactly as
  ``goldisk sweep --n-jobs w --backend B`` runs it (``goldisk.cli._common.parallel_backend``):
  ``loky``: joblib's process pool; ``dask``: a real ``distributed.LocalCluster`` with ``w``
  worker processes, ``threads_per_worker=1``; ``ray``: a local Ray instance,
  ``num_cpus=w``. A backend whose package is missing is skipped.

Every worker uses one torch thread, so that ``w`` workers use ``w`` cores and the 1-worker
run does not already use them all: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
``OPENBLAS_NUM_THREADS`` default to 1 in this process before torch is imported (worker
processes inherit them; dask's nanny and Ray set 1 themselves, loky ``cpu_count // n_jobs``
unless the variable is set), and a probe task reports each worker's
``torch.get_num_threads()``.

Each backend configuration is started, warmed up (a probe task per worker imports goldisk
and runs a tiny sweep), then the sweep is timed; start-up (cluster start + warm-up) and
shut-down are reported apart. The rows of every run are compared with the serial rows.

Two things joblib does that shape the numbers: (1) a ``Parallel`` call whose effective
``n_jobs`` is 1 runs in the calling process for every backend (loky, Ray, and dask, whose
effective ``n_jobs`` is the cluster's core count), so each 1-worker row is an in-process
run under that backend's configuration (the cluster is started but idle); (2) Ray's joblib
backend builds a new actor pool for every ``Parallel`` call and ends it with the call, so a
Ray sweep pays the start of its worker processes (torch and goldisk imports included)
inside the timed sweep, and the warm-up cannot help it; loky's executor and dask's workers
persist between calls.

Default workload: the digits MLP 64-100-100-10 (D = 17,610, ReLU, Xavier reference), dims
{10, 50} (nested: one 50-direction Hessian per point), Fort's 25-radius grid, 2 subspaces,
1,000 Hessian samples, float64: 50 tasks of ~0.9 s each on one thread (~45 s serial);
the whole benchmark takes ~5 min on 2 cores.

    python benchmarks/bench_distributed.py                    # loky, dask, ray; 1 and 2 workers
    python benchmarks/bench_distributed.py --backends loky dask --workers 1 2 4
    python benchmarks/bench_distributed.py --quick            # a tiny sweep (~1 min), smoke test
"""

from __future__ import annotations

import os

# one BLAS/OpenMP thread per process, set before torch is imported (inherited by workers)
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS_DIR,
    environment,
    format_table,
    load_average,
    package_version,
    write_json,
)

from goldisk.cli._common import parallel_backend  # noqa: E402
from goldisk.datasets import load_digits  # noqa: E402
from goldisk.models import MLP  # noqa: E402
from goldisk.sweep import default_radii, radius_sweep  # noqa: E402

BACKENDS = ("loky", "dask", "ray")
#: module a backend needs (a backend whose module is missing is skipped)
REQUIRES = {"loky": "joblib", "dask": "distributed", "ray": "ray"}
KEYS = ["subspace", "radius_index", "dim"]


def workload(quick: bool, args) -> dict:
    """Model, data and sweep keywords of the timed sweep."""
    ds = load_digits()
    hidden = (16,) if quick else (100, 100)
    kw = {
        "radii": default_radii()[::6] if quick else default_radii(),
        "dims": (2, 4) if quick else tuple(args.dims),
        "n_subspaces": args.n_subspaces,
        "max_samples": 100 if quick else args.hessian_samples,
        "batch_size": 1000,
        "random_state": 0,
        "progress": False,
    }
    model = MLP(64, hidden, 10)
    D = sum(p.numel() for p in model.parameters())
    desc = (f"digits MLP 64-{'-'.join(map(str, hidden))}-10 (D = {D:,}), dims "
            f"{list(kw['dims'])}, {len(kw['radii'])} radii, {kw['n_subspaces']} subspaces, "
            f"{kw['max_samples']} Hessian samples, float64: "
            f"{len(kw['radii']) * kw['n_subspaces']} tasks")
    return {"model": model, "X": ds.X, "y": ds.y, "kw": kw, "D": D, "description": desc}


def _probe(seconds: float = 0.2):
    """Run in a worker: import goldisk, run a tiny sweep (warm-up), report pid and threads."""
    import os
    import time

    import torch

    from goldisk.datasets import load_digits
    from goldisk.models import MLP
    from goldisk.sweep import radius_sweep

    ds = load_digits()
    radius_sweep(MLP(64, (8,), 10), ds.X, ds.y, radii=[0.5, 2.0], dims=(2,), n_subspaces=1,
                 max_samples=50, n_jobs=1, progress=False)
    time.sleep(seconds)  # keeps the task long enough that every worker gets one
    return os.getpid(), torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")


def probe_workers(n_jobs: int, workers: int) -> dict:
    """Warm up every worker of the active joblib backend; which processes, how many threads."""
    from joblib import Parallel, delayed

    res = Parallel(n_jobs=n_jobs)(delayed(_probe)() for _ in range(4 * workers))
    pids = sorted({pid for pid, _, _ in res})
    threads = sorted({t for _, t, _ in res})
    return {"pids": pids, "in_process": pids == [os.getpid()], "torch_threads": threads,
            "omp_num_threads": sorted({str(o) for _, _, o in res})}


def compare(df: pd.DataFrame, ref: pd.DataFrame) -> dict:
    """How the rows of a run compare with the serial rows (same seeds)."""
    a = df.sort_values(KEYS, ignore_index=True)
    b = ref.sort_values(KEYS, ignore_index=True)
    if a.shape != b.shape or list(a.columns) != list(b.columns):
        return {"same": "DIFFERENT", "max_rel_diff": None,
                "detail": f"shape {a.shape} vs {b.shape}"}
    num = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c])]
    x, r = a[num].to_numpy(float), b[num].to_numpy(float)
    both_nan = np.isnan(x) & np.isnan(r)
    diff = np.where(both_nan, 0.0, np.abs(x - r))
    rel = float(np.nanmax(diff / np.maximum(np.abs(r), 1e-300))) if diff.size else 0.0
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        same = "identical"
    except AssertionError:
        try:  # the tolerance of tests/test_distributed.py
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-13)
            same = "<= 1e-9 rel"
        except AssertionError:
            same = "DIFFERENT"
    return {"same": same, "max_rel_diff": rel, "rows": len(a)}


def timed_sweep(wl: dict, n_jobs: int) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    df = radius_sweep(wl["model"], wl["X"], wl["y"], n_jobs=n_jobs, **wl["kw"])
    return df, time.perf_counter() - t0


def run_backend(backend: str, workers: int, wl: dict, ref: pd.DataFrame) -> dict:
    """Start ``backend`` with ``workers`` workers as the CLI does, warm up, time the sweep."""
    args = SimpleNamespace(backend=backend, n_jobs=workers, scheduler=None)
    row = {"backend": backend, "workers": workers, "load_1min_before": load_average()[0]}
    with contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        stack.enter_context(parallel_backend(args))
        row["init_s"] = time.perf_counter() - t0
        probe = probe_workers(workers, workers)
        row["start_s"] = time.perf_counter() - t0
        row["warmup_s"] = row["start_s"] - row["init_s"]
        df, row["sweep_s"] = timed_sweep(wl, workers)
        row["load_1min_after"] = load_average()[0]
        t1 = time.perf_counter()
    row["shutdown_s"] = time.perf_counter() - t1
    row.update(probe)
    row["mode"] = "in-process" if probe["in_process"] else f"{len(probe['pids'])} proc"
    row["threads"] = ",".join(map(str, probe["torch_threads"]))
    row.update(compare(df, ref))
    return row


def git_dirty(repo: Path) -> list[str] | None:
    """Uncommitted changes under goldisk/ (the code that was timed may not be HEAD's)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "goldisk"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line[3:] for line in out.stdout.splitlines()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dims", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--n-subspaces", type=int, default=2)
    ap.add_argument("--hessian-samples", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="a tiny sweep (checks the script)")
    ap.add_argument("--out", default=None, help="result JSON (default: results/"
                    "bench_distributed_cpu.json, _quick with --quick)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # the serial baseline and the in-process (n_jobs=1) runs
    out_path = Path(args.out or RESULTS_DIR / ("bench_distributed_cpu"
                                               + ("_quick" if args.quick else "") + ".json"))
    env = environment("cpu")
    env["versions"].update({p: package_version(p) for p in ("joblib", "dask", "distributed",
                                                            "ray")})
    env["goldisk_uncommitted"] = git_dirty(Path(__file__).resolve().parent.parent)
    wl = workload(args.quick, args)
    print(f"workload: {wl['description']}", flush=True)
    print(f"{os.cpu_count()} CPUs, load average {load_average()}", flush=True)
    if load_average()[0] > 0.5:
        print("warning: the machine is busy (1-minute load > 0.5): other processes share "
              "the cores, so the speed-ups will be understated", flush=True)

    t_start = time.perf_counter()
    radius_sweep(MLP(64, (8,), 10), wl["X"], wl["y"], radii=[0.5, 2.0], dims=(2,),
                 n_subspaces=1, max_samples=50, progress=False)  # warm-up
    load0 = load_average()[0]
    ref, serial_s = timed_sweep(wl, 1)
    serial = {"backend": "serial", "workers": 1, "mode": "in-process", "threads": "1",
              "start_s": 0.0, "sweep_s": serial_s, "shutdown_s": 0.0,
              "load_1min_before": load0, "load_1min_after": load_average()[0],
              "same": "reference", "max_rel_diff": 0.0, "rows": len(ref)}
    print(f"serial (n_jobs=1, in-process, 1 thread): {serial_s:.1f} s, {len(ref)} rows",
          flush=True)
    rows, skipped = [serial], {}
    for backend in args.backends:
        if importlib.util.find_spec(REQUIRES[backend]) is None:
            skipped[backend] = f"{REQUIRES[backend]} not installed"
            print(f"{backend}: skipped ({skipped[backend]})", flush=True)
            continue
        for w in args.workers:
            row = run_backend(backend, w, wl, ref)
            rows.append(row)
            print(f"{backend}, {w} worker(s) [{row['mode']}, {row['threads']} thread(s)]: "
                  f"start {row['init_s']:.1f} s + warm-up {row['warmup_s']:.1f} s, "
                  f"sweep {row['sweep_s']:.1f} s, shut-down {row['shutdown_s']:.1f} s, "
                  f"rows vs serial: {row['same']} (max rel diff {row['max_rel_diff']:.1e}), "
                  f"load {row['load_1min_before']} -> {row['load_1min_after']}", flush=True)
    for row in rows:
        one = next((r for r in rows if r["backend"] == row["backend"] and r["workers"] == 1),
                   None)
        row["speedup_vs_1"] = one["sweep_s"] / row["sweep_s"] if one else float("nan")
        row["speedup_vs_serial"] = serial_s / row["sweep_s"]
        row["efficiency"] = row["speedup_vs_serial"] / row["workers"]
    total = time.perf_counter() - t_start
    print()
    print(format_table(rows, [
        ("backend", "backend", "s"), ("workers", "workers", "d"), ("mode", "runs", "s"),
        ("threads", "threads/worker", "s"), ("start_s", "start [s]", ".1f"),
        ("sweep_s", "sweep [s]", ".1f"), ("speedup_vs_1", "x vs 1 worker", ".2f"),
        ("speedup_vs_serial", "x vs serial", ".2f"), ("same", "rows vs serial", "s"),
        ("max_rel_diff", "max rel diff", ".1e"),
        ("load_1min_before", "load before", ".2f"), ("load_1min_after", "load after", ".2f"),
    ]))
    identical = all(r["same"] in ("reference", "identical", "<= 1e-9 rel") for r in rows)
    print(f"\nresults equal to the serial run: {'yes' if identical else 'NO'} "
          f"({', '.join(sorted({r['same'] for r in rows[1:]})) or 'no parallel run'})")
    if skipped:
        print("skipped: " + "; ".join(f"{b} ({why})" for b, why in skipped.items()))
    env["load_average_end"] = load_average()
    print(f"load average at start {env['load_average_start']}, at end "
          f"{env['load_average_end']}; total {total:.0f} s")
    write_json(out_path, {
        "workload": {"description": wl["description"], "D": wl["D"],
                     **{k: (list(map(float, v)) if k == "radii" else v)
                        for k, v in wl["kw"].items()}},
        "environment": env, "rows": rows, "skipped": skipped,
        "all_equal_to_serial": identical, "total_s": total,
    })
    print(f"saved {out_path}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
