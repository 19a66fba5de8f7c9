"""Fastfood at millions of parameters: construction time and peak memory, then the first
``forward`` and ``transpose`` (which build the index and fold caches), each stage's peak
above the memory in use when it starts, next to the buffers' and caches' own bytes.

Each size runs in its own process (a clean resident-set high-water mark)::

    python benchmarks/bench_fastfood_memory.py --device cpu \
        --out benchmarks/results/bench_fastfood_memory_cpu.json

Default sizes: the ResNet-18 of ``bench_scale.py`` (D = 11,173,962, L = 2^24) in float32
and D = 2e7 (L = 2^25) in float64, with d = 2 (the column norms cost d transforms of length
L at construction, so d sets the construction time, not its peak).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakMemory, environment, format_table, sync, write_json  # noqa: E402

SIZES = ((11_173_962, 2, "float32"), (20_000_000, 2, "float64"))


def _nbytes(tensors) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors))


def _measure(D: int, d: int, dtype: str, device: str) -> dict:
    from goldisk.projections import make_projection

    dt = getattr(torch, dtype)
    row = {"D": D, "d": d, "dtype": dtype}
    stages = {}
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        P = make_projection("fastfood", D, d, random_state=0, dtype=dt, device=device)
        sync(device)
    stages["construction"] = (time.perf_counter() - t0, mem.peak_mib)
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(d, generator=g, dtype=dt).to(device)
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        y = P(theta)
        sync(device)
    stages["first forward"] = (time.perf_counter() - t0, mem.peak_mib)
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        P.transpose(y)
        sync(device)
    stages["first transpose"] = (time.perf_counter() - t0, mem.peak_mib)
    fold = P._fold()
    row.update(
        L=P.L,
        buffers_mib=P.memory_bytes / 2**20,
        index_cache_mib=_nbytes([P._index()]) / 2**20,
        fold_cache_mib=(_nbytes([fold.A.crow_indices(), fold.A.col_indices(), fold.A.values()])
                        / 2**20 if fold is not None else 0.0),
        memory_method=mem.method,
        stages={k: {"seconds": t, "peak_mib": m} for k, (t, m) in stages.items()},
    )
    return row


def _child(args, queue):
    try:
        queue.put(_measure(*args))
    except Exception as exc:  # noqa: BLE001 - recorded in the row
        queue.put({"D": args[0], "d": args[1], "dtype": args[2],
                   "error": f"{type(exc).__name__}: {exc}"})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", nargs="*", default=None, metavar="D:d:dtype",
                    help="e.g. 11173962:2:float32 (default: the two sizes in the docstring)")
    ap.add_argument("--out", default=None, help="JSON file (saved after every size)")
    args = ap.parse_args(argv)
    sizes = SIZES if not args.sizes else [
        (int(D), int(d), dt) for D, d, dt in (s.split(":") for s in args.sizes)]
    out = {"benchmark": "fastfood_memory", "environment": environment(args.device), "rows": []}
    ctx = mp.get_context("spawn")
    for D, d, dtype in sizes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=((D, d, dtype, args.device), queue))
        proc.start()
        proc.join()  # the row is small: the child's put does not block on the pipe
        try:
            row = queue.get(timeout=5)
        except Exception:  # noqa: BLE001 - the child died (e.g. killed for memory)
            row = {"D": D, "d": d, "dtype": dtype, "error": f"exit code {proc.exitcode}"}
        out["rows"].append(row)
        if args.out:
            write_json(args.out, out)
    table = [dict(r, **{f"{k} s": v["seconds"] for k, v in r.get("stages", {}).items()},
                  **{f"{k} MiB": v["peak_mib"] for k, v in r.get("stages", {}).items()})
             for r in out["rows"]]
    cols = [("D", "D", "d"), ("dtype", "dtype", "s")]
    for stage in ("construction", "first forward", "first transpose"):
        cols += [(f"{stage} s", f"{stage} s", ".2f"), (f"{stage} MiB", "peak MiB", ".0f")]
    cols += [("buffers_mib", "buffers MiB", ".0f"), ("fold_cache_mib", "fold MiB", ".0f")]
    print(format_table([r for r in table if "error" not in r], cols))
    for r in out["rows"]:
        if "error" in r:
            print(f"D={r['D']} d={r['d']} {r['dtype']}: {r['error']}")
    if not args.out:
        print(json.dumps(out["rows"], indent=1))


if __name__ == "__main__":
    main()
