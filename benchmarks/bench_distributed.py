"""Radius sweep on 1 and 2 workers: joblib loky, a dask LocalCluster and Ray, side by side.

The same sweep (``goldisk.sweep.radius_sweep``, same seeds) runs

* in-process, ``n_jobs=1``, one torch thread: the serial baseline;
* for each backend and each worker count ``w`` (default 1 and 2), exactly as
  ``goldisk sweep --n-jobs w --backend B`` runs it (``goldisk.cli._common.parallel_backend``):
  ``loky``: joblib's process pool; ``dask``: a real ``distributed.LocalCluster`` with ``w``
  worker processes, ``threads_per_worker=1``; ``dask-notrim``: the same cluster with the
  nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` left out (glibc's default; see below);
  ``ray``: a local Ray instance, ``num_cpus=w``. A backend whose package is missing is
  skipped.

Every worker uses one torch thread, so that ``w`` workers use ``w`` cores and the 1-worker
run does not already use them all: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
``OPENBLAS_NUM_THREADS`` default to 1 in this process before torch is imported (worker
processes inherit them; dask's nanny and Ray set 1 themselves, loky ``cpu_count // n_jobs``
unless the variable is set), and a probe task reports each worker's
``torch.get_num_threads()``.

Each backend configuration is started, warmed up (probe tasks of the workload's size, so
every worker has imported goldisk and run one real task), then the sweep is timed;
start-up (cluster start + warm-up) and shut-down are reported apart, and worker processes
restarted during the sweep are counted. The rows of every run are compared with the serial
rows. The process environment is restored after each backend (dask's nanny writes its
``pre-spawn-environ`` into it, which later-spawned processes would inherit).

What shapes the numbers: (1) a joblib ``Parallel`` call whose effective ``n_jobs`` is 1 runs
in the calling process for every backend (loky, Ray, and dask, whose effective ``n_jobs``
is the cluster's core count), so each 1-worker row is an in-process run under that
backend's configuration (the cluster is started but idle); (2) Ray's joblib backend builds
a new actor pool for every ``Parallel`` call and ends it with the call, so a Ray sweep pays
the start of its worker processes (torch and goldisk imports) inside the timed sweep, and
the warm-up cannot help it; loky's executor and dask's workers persist between calls;
(3) dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, under which glibc
hands freed memory back to the kernel at once, so the Hessian's large temporaries are
page-faulted in again on every call (system time).

Default workload: the digits MLP 64-100-100-10 (D = 17,610, ReLU, Xavier reference), dims
{10, 50} (nested: one 50-direction Hessian per point), Fort's 25-radius grid, 2 subspaces,
1,000 Hessian samples, float64: 50 tasks of ~0.6 s each on one thread (~30 s serial);
the whole benchmark takes ~4-5 min on 2 cores.

    python benchmarks/bench_distributed.py                    # all backends; 1 and 2 workers
    python benchmarks/bench_distributed.py --backends loky dask --workers 1 2 4
    python benchmarks/bench_distributed.py --quick            # a tiny sweep (~2 min), smoke test
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
import tempfile  # noqa: E402
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

BACKENDS = ("loky", "dask", "dask-notrim", "ray")
#: module a backend needs (a backend whose module is missing is skipped)
REQUIRES = {"loky": "joblib", "dask": "distributed", "dask-notrim": "distributed", "ray": "ray"}
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


def _probe(model, X, y, kw, seconds: float = 0.2):
    """Run in a worker: one task of the workload's size (imports and warm-up), then pid,
    torch threads and the environment variables that matter.

    The warm-up task has the real size on purpose: loky takes a worker's reference memory
    after its first task and restarts a worker whose memory then grows by 300 MB; after a
    tiny first task that restart came in the timed sweep. (It can still happen as the heap
    grows over tasks: restarts are counted and reported.)
    """
    import os
    import time

    import torch

    from goldisk.sweep import radius_sweep

    radius_sweep(model, X, y, n_jobs=1, **{**kw, "radii": [1.0], "n_subspaces": 1})
    time.sleep(seconds)  # keeps the task long enough that every worker gets one
    import goldisk

    env = " ".join([*(f"{k}={os.environ.get(k, '-')}"
                      for k in ("OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")),
                    f"goldisk={os.path.dirname(goldisk.__file__)}"])
    return os.getpid(), torch.get_num_threads(), env


def _pid(seconds: float = 0.2) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def probe_workers(n_jobs: int, workers: int, wl: dict) -> dict:
    """Warm up every worker of the active joblib backend; which processes, how many threads."""
    from joblib import Parallel, delayed

    res = Parallel(n_jobs=n_jobs)(delayed(_probe)(wl["model"], wl["X"], wl["y"], wl["kw"])
                                  for _ in range(2 * workers))
    pids = sorted({pid for pid, _, _ in res})
    return {"pids": pids, "in_process": pids == [os.getpid()],
            "torch_threads": sorted({t for _, t, _ in res}),
            "worker_env": ", ".join(sorted({e for _, _, e in res}))}


def worker_pids(n_jobs: int, workers: int) -> list[int]:
    from joblib import Parallel, delayed

    return sorted(set(Parallel(n_jobs=n_jobs)(delayed(_pid)() for _ in range(4 * workers))))


def compare(df: pd.DataFrame, ref: pd.DataFrame) -> dict:
    """How the rows of a run compare with the serial rows (same seeds).

    ``max_diff`` is the largest ``|x - x_serial|`` over all numeric cells, each divided by
    the largest ``|x_serial|`` of its column (so quantities that are ~0 do not inflate it).
    """
    a = df.sort_values(KEYS, ignore_index=True)
    b = ref.sort_values(KEYS, ignore_index=True)
    if a.shape != b.shape or list(a.columns) != list(b.columns):
        return {"same": "DIFFERENT", "max_diff": None, "detail": f"shape {a.shape} vs {b.shape}"}
    num = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c])]
    x, r = a[num].to_numpy(float), b[num].to_numpy(float)
    diff = np.where(np.isnan(x) & np.isnan(r), 0.0, np.abs(x - r))
    scale = np.maximum(np.nanmax(np.abs(r), axis=0, initial=0.0), 1e-300)
    max_diff = float(np.nanmax(diff / scale, initial=0.0))
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        same = "identical"
    except AssertionError:
        try:  # the tolerance of tests/test_sweep_distributed.py
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-13)
            same = "<= 1e-9 rel"
        except AssertionError:
            same = "DIFFERENT"
    return {"same": same, "max_diff": max_diff, "rows": len(a)}


def timed_sweep(wl: dict, n_jobs: int) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    df = radius_sweep(wl["model"], wl["X"], wl["y"], n_jobs=n_jobs, **wl["kw"])
    return df, time.perf_counter() - t0


def session(backend: str, workers: int, wl: dict, ref: pd.DataFrame,
            in_process: bool) -> list[dict]:
    """Start ``backend`` with ``workers`` workers as ``goldisk sweep --n-jobs workers
    --backend backend`` does, warm up, time the sweep on the workers, and (``in_process``)
    the sweep with ``n_jobs=1`` right before it: joblib runs that one in this process."""
    args = SimpleNamespace(backend=backend.split("-")[0], n_jobs=workers, scheduler=None)
    saved_env = dict(os.environ)  # dask's nanny writes its pre-spawn-environ into ours
    rows = []
    with contextlib.ExitStack() as stack:
        if backend == "dask-notrim":  # glibc's default trim threshold in the workers
            import dask

            stack.enter_context(dask.config.set(
                {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}))
        t0 = time.perf_counter()
        stack.enter_context(parallel_backend(args))
        init_s = time.perf_counter() - t0
        probe = probe_workers(workers, workers, wl)
        warmup_s = time.perf_counter() - t0 - init_s
        if in_process:
            load = load_average()[0]
            df, sweep_s = timed_sweep(wl, 1)
            rows.append({"backend": backend, "workers": 1, "mode": "in-process",
                         "threads": str(torch.get_num_threads()), "sweep_s": sweep_s,
                         "load_1min_before": load, "load_1min_after": load_average()[0],
                         **compare(df, ref)})
        row = {"backend": backend, "workers": workers, "init_s": init_s, "warmup_s": warmup_s,
               "start_s": init_s + warmup_s, "load_1min_before": load_average()[0]}
        df, row["sweep_s"] = timed_sweep(wl, workers)
        row["load_1min_after"] = load_average()[0]
        if backend != "ray" and not probe["in_process"]:  # Ray: a new pool every call
            row["restarted_workers"] = len(set(worker_pids(workers, workers))
                                           - set(probe["pids"]))
        t1 = time.perf_counter()
    row["shutdown_s"] = time.perf_counter() - t1
    os.environ.clear()
    os.environ.update(saved_env)
    row.update(probe)
    row["mode"] = "in-process" if probe["in_process"] else f"{len(probe['pids'])} proc"
    row["threads"] = ",".join(map(str, probe["torch_threads"]))
    row.update(compare(df, ref))
    return [*rows, row]


def git_dirty(repo: Path) -> list[str] | None:
    """Uncommitted changes under goldisk/ (the code that was timed may not be HEAD's)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "goldisk"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line[3:] for line in out.stdout.splitlines()]


def run_frozen(argv: list[str], out_path: Path) -> int:
    """Rerun this script on a ``git archive`` copy of HEAD's goldisk (PYTHONPATH and working
    directory), so that every process of the run, workers started minutes later included,
    runs the same code while the working tree changes."""
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="goldisk_head_") as tmp:
        archive = subprocess.run(["git", "-C", str(repo), "archive", "HEAD", "goldisk"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "GOLDISK_BENCH_FROZEN": tmp,
               "PYTHONPATH": os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--out", str(out_path)]
        return subprocess.run(cmd, cwd=tmp, env=env).returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="worker counts; 1 is the in-process run (joblib's n_jobs=1)")
    ap.add_argument("--dims", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--n-subspaces", type=int, default=2)
    ap.add_argument("--hessian-samples", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="a tiny sweep (checks the script)")
    ap.add_argument("--frozen-head", action="store_true",
                    help="time HEAD's goldisk from a git-archive copy (for a working tree "
                         "that is being edited during the run)")
    ap.add_argument("--out", default=None, help="result JSON (default: results/"
                    "bench_distributed_cpu.json, _quick with --quick)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    out_path = Path(args.out or RESULTS_DIR / ("bench_distributed_cpu"
                                               + ("_quick" if args.quick else "") + ".json"))
    if args.frozen_head and "GOLDISK_BENCH_FROZEN" not in os.environ:
        return run_frozen(argv, out_path.resolve())  # its --out comes last and wins
    workers = sorted({w for w in args.workers if w > 1})
    if not workers:
        ap.error("--workers needs a count > 1 (1 is measured in-process next to it)")
    torch.set_num_threads(1)  # the serial baseline and the in-process (n_jobs=1) runs
    env = environment("cpu")
    env["versions"].update({p: package_version(p) for p in ("joblib", "dask", "distributed",
                                                            "ray")})
    import goldisk

    env["goldisk_source"] = str(Path(goldisk.__file__).parent)
    env["goldisk_frozen_head"] = "GOLDISK_BENCH_FROZEN" in os.environ
    env["goldisk_uncommitted"] = (None if env["goldisk_frozen_head"]
                                  else git_dirty(Path(__file__).resolve().parent.parent))
    wl = workload(args.quick, args)
    print(f"workload: {wl['description']}", flush=True)
    print(f"goldisk from {env['goldisk_source']}"
          + (" (HEAD, frozen)" if env["goldisk_frozen_head"] else ""), flush=True)
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
              "sweep_s": serial_s, "load_1min_before": load0,
              "load_1min_after": load_average()[0], "same": "reference", "max_diff": 0.0,
              "rows": len(ref)}
    print(f"serial (n_jobs=1, no backend, 1 thread): {serial_s:.1f} s, {len(ref)} rows",
          flush=True)
    rows, skipped = [serial], {}
    for backend in args.backends:
        if importlib.util.find_spec(REQUIRES[backend]) is None:
            skipped[backend] = f"{REQUIRES[backend]} not installed"
            print(f"{backend}: skipped ({skipped[backend]})", flush=True)
            continue
        for i, w in enumerate(workers):
            # dask-notrim's in-process run would be dask's: same process, same settings
            in_process = i == 0 and 1 in args.workers and backend != "dask-notrim"
            for row in session(backend, w, wl, ref, in_process):
                rows.append(row)
                what = (f"start {row['init_s']:.1f} s + warm-up {row['warmup_s']:.1f} s, "
                        f"sweep {row['sweep_s']:.1f} s, shut-down {row['shutdown_s']:.1f} s, "
                        f"workers: {row['worker_env']}, restarted "
                        f"{row.get('restarted_workers', '-')}" if "init_s" in row
                        else f"sweep {row['sweep_s']:.1f} s")
                print(f"{backend}, {row['workers']} worker(s) [{row['mode']}, {row['threads']} "
                      f"thread(s)]: {what}; rows vs serial: {row['same']} (max diff "
                      f"{row['max_diff']:.1e}); load {row['load_1min_before']} -> "
                      f"{row['load_1min_after']}", flush=True)
    for row in rows:
        base = row["backend"].split("-")[0]
        one = next((r for r in rows if r["backend"] == base and r["workers"] == 1), None)
        row["speedup_vs_1"] = one["sweep_s"] / row["sweep_s"] if one else float("nan")
        row["speedup_vs_serial"] = serial_s / row["sweep_s"]
    total = time.perf_counter() - t_start
    print()
    print(format_table(rows, [
        ("backend", "backend", "s"), ("workers", "workers", "d"), ("mode", "runs", "s"),
        ("threads", "threads/worker", "s"), ("restarted_workers", "restarts", "d"),
        ("start_s", "start [s]", ".1f"), ("sweep_s", "sweep [s]", ".1f"),
        ("speedup_vs_1", "x vs 1 worker", ".2f"), ("speedup_vs_serial", "x vs serial", ".2f"),
        ("same", "rows vs serial", "s"), ("max_diff", "max diff", ".1e"),
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
