"""Shared helpers for the goldisk benchmarks: environment capture, timing, memory, JSON.

Nothing here imports an optional peer at module level, so the helpers work (and the smoke
test runs) without the ``bench`` extra installed.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: distributions whose versions are recorded with every result file
PACKAGES = (
    "goldisk",
    "torch",
    "numpy",
    "pyhessian",
    "curvlinops-for-pytorch",
    "backpack-for-pytorch",
)


def package_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or ``None``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (a measure of how contended the machine is)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Windows
        return None


def git_commit(repo: Path) -> str | None:
    """HEAD of ``repo``; where the tree is a copy without ``.git`` (a lent GPU machine), the
    ``GOLDISK_COMMIT`` environment variable the launcher sets."""
    if os.environ.get("GOLDISK_COMMIT"):
        return os.environ["GOLDISK_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(device: str) -> dict:
    """Everything needed to interpret a timing: versions, CPU, threads, device, load."""
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "device": device,
        "versions": {p: package_version(p) for p in PACKAGES},
        "git_commit": git_commit(Path(__file__).resolve().parent.parent),
        "load_average_start": load_average(),
        "env_vars": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
            if k in os.environ
        },
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device="cpu"):
    """``(result, seconds)`` of one call of ``fn()`` (device synchronised on both sides)."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def median(xs):
    return float(statistics.median(xs)) if xs else float("nan")


# ---------------------------------------------------------------------- peak memory
_HWM = re.compile(r"VmHWM:\s+(\d+)\s+kB")
_RSS = re.compile(r"VmRSS:\s+(\d+)\s+kB")


def _status_kb(pattern) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            m = pattern.search(fh.read())
    except OSError:
        return None
    return int(m.group(1)) if m else None


class PeakMemory:
    """Peak memory of a block of code, in MiB above the memory in use when it started.

    CPU: the process's resident-set high-water mark. On Linux it is reset at the start of
    the block (``/proc/self/clear_refs`` <- ``5``), so the peak is that of the block alone
    and not of whatever ran before in the process (e.g. building the projection); where the
    reset is not allowed, ``ru_maxrss`` deltas are used (a lower bound). Run each method in
    its own process for clean numbers. CUDA: ``torch.cuda.max_memory_allocated``.

    ``tensors=True`` on CPU also records ``tensor_peak_mib``, the high-water mark of the bytes
    held by tensors allocated in the block (what ``max_memory_allocated`` counts on a GPU,
    without the CUDA allocator's rounding), from the allocation events of
    ``torch.profiler(profile_memory=True)``: free of the C heap's fragmentation and of
    allocator caches, but it records every op, so use it on short runs only.
    """

    def __init__(self, device="cpu", tensors=False):
        self.device = str(device)
        self.method = None
        self.peak_mib = None
        self.tensor_peak_mib = None
        self._prof = None
        if tensors and not self.device.startswith("cuda"):
            from torch.profiler import ProfilerActivity, profile

            self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)

    def __enter__(self):
        if self._prof is not None:
            self._prof.__enter__()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            self.method = "torch.cuda.max_memory_allocated"
            return self
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self._base = _status_kb(_RSS)
            self.method = "VmHWM after clear_refs"
        except OSError:
            self._base = None
        if self._base is None:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.method = "ru_maxrss delta"
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak_mib = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        elif self.method == "VmHWM after clear_refs":
            self.peak_mib = ((_status_kb(_HWM) or 0) - self._base) / 1024
        else:
            self.peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._base) / 1024
        if self._prof is not None:
            self._prof.__exit__(*exc)
            self.tensor_peak_mib = tensor_peak_bytes(self._prof) / 2**20
        return False


def tensor_peak_bytes(prof) -> int:
    """Largest running total of the signed allocation sizes a finished profiler recorded."""
    cpu = torch._C._autograd.DeviceType.CPU
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == cpu)
    total = peak = 0
    for _, nbytes in events:
        total += nbytes
        peak = max(peak, total)
    return peak


# ---------------------------------------------------------------------- output
def write_json(path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_default) + "\n")
    tmp.replace(path)
    return path


def _default(obj):
    if isinstance(obj, torch.dtype | torch.device):
        return str(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table; ``columns`` holds ``(key, header, format)`` triples."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        line = []
        for key, _, fmt in columns:
            v = r.get(key)
            if v is None or (isinstance(v, float) and v != v):
                line.append("-")
            elif isinstance(v, str):
                line.append(v)
            else:
                line.append(format(v, fmt))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    out = []
    for j, c in enumerate(cells):
        out.append("  ".join(s.rjust(w) if i else s.ljust(w) for i, (s, w) in
                             enumerate(zip(c, widths, strict=True))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
