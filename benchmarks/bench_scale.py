"""Scale: an 11M-parameter ResNet-18 (CIFAR-shaped inputs, eval-mode BatchNorm) probed on
a d = 1,000 subspace, and subspace-training overhead (time per step in a d = 1,000
subspace over a full-space step).

    python benchmarks/bench_scale.py --device cuda
    python benchmarks/bench_scale.py --device cpu --only overhead
    python benchmarks/bench_scale.py --device cpu --only scale   # batch 8, about 30 min

Peak memory is compared with one forward-backward pass at the same batch size plus d^2
floats; a TorchDispatchMode records the largest tensor created, to show that no D x d
array exists for the sparse and Fastfood projections.

Overhead: an MLP 784-w-w-10 (w = 200 on CPU: D = 199,210; w = 700 on GPU: D = 1,047,210),
float32, batch 128, Adam, one step = zero_grad + forward + backward + step. After 3 warm-up
steps each, the methods take turns in blocks of ``--steps`` timed steps, each after one
untimed step, for ``--repeats`` rounds (full, dense, sparse, ..., full, dense, ...), so that
a change in the machine's load hits all of them alike; the reported step time is the median
over all the timed steps of a method (on GPU, of the per-block means) and the ratio is over
the full-space median. The JSON records the environment (CPU, threads, versions, load
averages at start and end) next to the rows.

The published PyTorch port of Li et al.'s wrappers (``intrinsic-dimensionality`` on PyPI,
github.com/jgamper/intrinsic-dimensionality) is run side by side when importable (module
``intrinsic``); otherwise the JSON says why it is missing.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    PeakMemory,
    environment,
    format_table,
    load_average,
    write_json,
)

from goldisk import SubspaceModule  # noqa: E402
from goldisk.curvature import subspace_hessian  # noqa: E402
from goldisk.models import MLP  # noqa: E402
from goldisk.projections import make_projection  # noqa: E402

RESULTS = Path(__file__).parent / "results"

#: Why the published port of Li et al. is not in the table when ``import intrinsic`` fails
#: (checked with ``pip download intrinsic-dimensionality --no-deps``).
LI_PORT_MISSING = (
    "intrinsic-dimensionality 0.1 (the only release on PyPI, 2020-07-21) downloads, but its "
    "wheel holds only the .dist-info metadata (LICENSE, METADATA, WHEEL, RECORD and an empty "
    "top_level.txt): no 'intrinsic' module, so there is nothing to import. Its metadata also "
    "pins torch==1.5.1, numpy==1.19.1 and 32 other exact versions, which cannot be installed "
    "next to torch 2.x. The wrappers (DenseWrap, FastFoodWrap) exist only as source on GitHub "
    "(jgamper/intrinsic-dimensionality) and are not vendored here."
)


class LargestTensor(TorchDispatchMode):
    """Remember the largest number of elements of any strided tensor an op returns.

    Sparse (CSR/COO) wrappers are skipped: their ``numel`` is the logical ``rows x cols``
    size, while their index and value arrays, made by other ops, are counted as they are."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                self.largest = max(self.largest, t.numel())
        return out


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def resnet18():
    import torchvision

    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem
    net.maxpool = torch.nn.Identity()
    return net.eval()


#: One bare Hessian-vector product per row, the floors of the memory comparison.
BARE_HVPS = ("hvp_double_backward", "hvp_double_backward_retained", "hvp_forward_ad")


def _bare_hvp(what, net, names, params, v, X, y):
    """One Hessian-vector product of the mean loss, as a peer would compute it: a double
    backward (PyHessian), the same keeping the gradient graph for further directions
    (``retain_graph=True``, as any method must that reuses one gradient for many directions),
    or forward-mode AD through the backward (``torch.autograd.forward_ad``). Their peak
    memory is the floor for any engine built on them."""
    from torch.autograd import forward_ad as fwad
    from torch.func import functional_call

    def loss(ws):
        z = functional_call(net, dict(zip(names, ws, strict=True)), (X,))
        return torch.nn.functional.cross_entropy(z, y)

    if what.startswith("hvp_double_backward"):
        g = torch.autograd.grad(loss(params), params, create_graph=True)
        return torch.autograd.grad(g, params, v, retain_graph=what.endswith("_retained"))
    with fwad.dual_level():
        duals = [fwad.make_dual(p, t) for p, t in zip(params, v, strict=True)]
        g = torch.autograd.grad(loss(duals), params)
        return [fwad.unpack_dual(t).tangent for t in g]


#: Largest d at which the CPU rows also record the peak of live tensor bytes (the profiler
#: that counts them records every op; at d = 1,000 its event log would take gigabytes).
TENSOR_MAX_D = 50


def _peak(row, mem):
    if mem.tensor_peak_mib is None:
        return dict(row, peak_mib=mem.peak_mib, memory=mem.method)
    # the resident set then also holds the profiler's event log: kept, but not compared
    return dict(row, tensor_peak_mib=mem.tensor_peak_mib, rss_with_profiler_mib=mem.peak_mib,
                memory="live tensor bytes (profiler)")


def _scale_job(job):
    """One scale measurement, run in a fresh process (so that the CPU peak RSS is its own)."""
    what, kind, d, batch, chunk, method = (job.get(k) for k in
                                           ("what", "kind", "d", "batch", "chunk", "method"))
    dev = torch.device(job["device"])
    micro = job.get("micro") or batch
    tensors = dev.type == "cpu" and d <= TENSOR_MAX_D
    torch.manual_seed(0)  # torchvision draws the ResNet's weights from the global RNG
    net = resnet18().to(dev, torch.float32)
    D = sum(p.numel() for p in net.parameters())
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(batch, 3, 32, 32, generator=gen).to(dev)
    y = torch.randint(0, 10, (batch,), generator=gen).to(dev)
    opts = dict(batch_size=micro, chunk_size=chunk, method=method, dtype=torch.float32)
    if what == "fwd_bwd":
        with PeakMemory(dev, tensors) as mem:
            torch.nn.functional.cross_entropy(net(X), y).backward()
        return _peak({"what": what, "D": D, "batch": batch}, mem)
    if what in BARE_HVPS:  # one bare H v: the floor
        params = [p.detach().requires_grad_() for p in net.parameters()]
        names = [n for n, _ in net.named_parameters()]
        v = [torch.randn(p.shape, generator=gen).to(dev) for p in params]
        with PeakMemory(dev, tensors) as mem:
            sync(dev)
            t0 = time.perf_counter()
            _bare_hvp(what, net, names, params, v, X, y)
            sync(dev)
            secs = time.perf_counter() - t0
        return _peak({"what": what, "D": D, "batch": batch, "seconds": secs}, mem)
    t0 = time.perf_counter()
    P = make_projection(kind, D, d, random_state=0, dtype=torch.float32, device=dev)
    build = time.perf_counter() - t0
    if what == "largest":  # no D x d tensor: every op of a small run is watched
        with LargestTensor() as spy:
            subspace_hessian(net, X, y, P, **opts)
        return {"what": what, "kind": kind, "D": D, "d": d, "chunk": chunk, "method": method,
                "largest_tensor": spy.largest, "D_times_d": D * d,
                "no_Dxd_array": spy.largest < D * d}
    subspace_hessian(net, X[:1], y[:1], make_projection(kind, D, 2, random_state=0,
                                                        dtype=torch.float32, device=dev),
                     batch_size=1, dtype=torch.float32, method=method)  # warm-up
    with PeakMemory(dev) as cache:  # P's lazily built CSR / index caches, kept with P
        P.transpose(P(torch.zeros(d, device=dev))[None])
    with PeakMemory(dev, tensors) as mem:
        sync(dev)
        t0 = time.perf_counter()
        res = subspace_hessian(net, X, y, P, **opts)
        sync(dev)
        secs = time.perf_counter() - t0
    return _peak({"what": what, "kind": kind, "method": method, "D": D, "d": d,
                  "batch": batch, "micro_batch": micro, "chunk": chunk, "dtype": "float32",
                  "build_s": build, "seconds": secs, "seconds_per_direction": secs / d,
                  "projection_cache_mib": cache.peak_mib,
                  "finite": bool(torch.isfinite(res.H).all()),
                  "symmetric_err": float((res.H - res.H.T).abs().max() / res.H.abs().max())},
                 mem)


def _run_job(ctx, job, job_timeout):
    """``_scale_job(job)`` in a fresh process; a row over ``job_timeout`` s, or one that
    fails (out of memory, a crashed worker), is recorded as such and its worker killed, so
    the rows after it still run."""
    pool = ProcessPoolExecutor(1, mp_context=ctx)
    try:
        return pool.submit(_scale_job, job).result(timeout=job_timeout)
    except TimeoutError:
        return dict(job, timeout_s=job_timeout)
    except Exception as exc:  # noqa: BLE001 - recorded in the row, the run goes on
        return dict(job, error=f"{type(exc).__name__}: {str(exc).strip()[:300]}")
    finally:
        for proc in list((pool._processes or {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)


def scale(dev, d, batch, chunks, methods, kinds=("sparse", "fastfood"), job_timeout=None,
          micro_batches=(), deadline=None, on_row=None):
    """ResNet-18, d = ``d``: time and peak memory per projection (and per micro-batch size:
    the same Hessian of the ``batch`` samples, accumulated over smaller slices), each row in
    its own process, against one forward-backward pass at ``batch`` plus ``d^2`` floats.

    Rows in order of importance: the forward-backward (the budget), goldisk's Hessians, the
    floors, the no-``D x d`` audit. ``deadline`` (``time.monotonic()`` value): no row starts
    after it and none runs past it (recorded as skipped or timed out); ``on_row(rows)`` is
    called after every row (the caller saves them)."""
    ctx = multiprocessing.get_context("spawn")
    base = {"device": str(dev), "d": d, "batch": batch}
    jobs = [dict(base, what="fwd_bwd")]
    jobs += [dict(base, what="hessian", kind=kind, method=method, chunk=chunk, micro=micro)
             for kind in kinds for method in methods for chunk in chunks
             for micro in (None, *micro_batches)]
    jobs += [dict(base, what=what) for what in BARE_HVPS]
    jobs += [dict(base, what="largest", kind=kind, d=20, batch=min(batch, 16), method=method)
             for kind in kinds for method in methods]
    rows = []
    for job in jobs:
        limit, left = job_timeout, None
        if deadline is not None:
            left = deadline - time.monotonic()
            limit = left if limit is None else min(limit, left)
        if left is not None and left < 15:
            row = dict(job, skipped="deadline")
        else:
            row = _run_job(ctx, job, limit)
        if row["what"] != "fwd_bwd":
            fwd_bwd, floats = rows[0], d * d * 4 / 2**20
            for key in ("peak_mib", "tensor_peak_mib"):
                if key in row and key in fwd_bwd:
                    budget = 2 * fwd_bwd[key] + floats
                    row.update({key.replace("peak", "budget"): budget,
                                key.replace("peak_mib", "over_budget"): row[key] / budget,
                                "fwd_bwd_" + key: fwd_bwd[key]})
        rows.append(row)
        print(row, flush=True)
        if on_row is not None:
            on_row(rows)
    return rows


def _li_port():
    """``(module, None)`` for the published port of Li et al.'s wrappers, or ``(None, why)``."""
    try:
        return importlib.import_module("intrinsic"), None
    except ImportError as exc:
        return None, f"{LI_PORT_MISSING} (import intrinsic: {exc})"


def overhead(dev, D_target, d, batch, steps=5, repeats=20, save=None):
    """Rows of median step time per method, and notes; ``save(rows, notes)`` (if given)
    is called after every round-robin round with the rows so far, so a run cut short keeps
    what it measured."""
    width = 700 if D_target > 500_000 else 200  # D = 1,047,210 or 199,210
    net = MLP(784, (width, width), 10).to(dev)
    D = sum(p.numel() for p in net.parameters())
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(batch, 784, generator=gen).to(dev)
    y = torch.randint(0, 10, (batch,), generator=gen).to(dev)

    def stepper(module):
        """A function ``run(n)`` doing 1 + ``n`` training steps of ``module`` and returning
        the times of the last ``n``: each step's own time on CPU; on GPU the mean over the
        ``n`` steps (synchronised at both ends only, so that consecutive steps overlap as in
        training), ``n`` times. The untimed first step absorbs the cold caches left by the
        previous block (the dense projection streams 0.8 GB a step)."""
        opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-3)

        def step():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(X), y).backward()
            opt.step()

        def run(n):
            step()
            times = []
            sync(dev)
            start = time.perf_counter()
            for _ in range(n):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            sync(dev)
            if dev.type == "cuda":
                return [(time.perf_counter() - start) / n] * n
            return times

        run(2)  # warm-up (and the lazily built sparse / Fastfood caches)
        return run

    methods = {"full space": (net, D)}
    for kind in ("dense", "sparse", "sparse-li", "fastfood"):
        if kind == "dense" and D * d > 4e8:
            continue
        P = make_projection(kind, D, d, random_state=0, dtype=torch.float32, device=dev)
        methods[f"subspace ({kind})"] = (SubspaceModule(net, P).to(dev), d)
    li, li_missing = _li_port()
    li_errors = {}
    if li is not None:  # pragma: no cover - the PyPI release has no module (see LI_PORT_MISSING)
        # the wrappers as the port's README calls them: Wrap(model, intrinsic_dimension, device)
        for name, wrap in (("dense", "DenseWrap"), ("fastfood", "FastFoodWrap")):
            try:
                mod = getattr(li, wrap)(copy.deepcopy(net), intrinsic_dimension=d,
                                        device=dev.index if dev.type == "cuda" else "cpu")
                methods[f"Li et al. port ({name})"] = (mod.to(dev), d)
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                li_errors[wrap] = f"{type(exc).__name__}: {exc}"

    runners = {name: stepper(module) for name, (module, _) in methods.items()}
    samples = {name: [] for name in methods}
    unit = "mean step time of each block" if dev.type == "cuda" else "step time"

    def summarize(rounds):
        full = statistics.median(samples["full space"])
        rows = []
        for name, (_, dim) in methods.items():
            t = statistics.median(samples[name])
            rows.append({"method": name, "D": D, "d": dim, "step_s": t, "ratio": t / full,
                         "step_s_quartiles": (statistics.quantiles(samples[name], n=4)
                                              if len(samples[name]) > 1 else [t, t, t]),
                         "steps_timed": len(samples[name])})
        notes = {"li_et_al_port": (f"not available: {li_missing}" if li is None
                                   else f"run; errors: {li_errors}" if li_errors else "run"),
                 "timing": f"median {unit} over {rounds} round-robin blocks of {steps} steps "
                           "per method, each block after one untimed step (and 3 warm-up "
                           "steps at first); ratio = median / full-space median"}
        return rows, notes

    for k in range(repeats):  # round robin: a change of the machine's load hits all alike
        for name, run in runners.items():
            samples[name].extend(run(steps))
        if save is not None and k + 1 < repeats:
            save(*summarize(k + 1))
    return summarize(repeats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", choices=("scale", "overhead"), default=None)
    ap.add_argument("--d", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="steps per block (overhead)")
    ap.add_argument("--repeats", type=int, default=20, help="round-robin blocks (overhead)")
    ap.add_argument("--scale-batch", type=int, default=None,
                    help="ResNet batch (default 128 on GPU, 8 on CPU)")
    ap.add_argument("--methods", nargs="*", choices=("reverse", "forward"), default=None,
                    help="subspace_hessian engines for the ResNet runs (default: reverse; "
                         "the forward engine took > 170 s on an H100 before)")
    ap.add_argument("--kinds", nargs="*", choices=("sparse", "fastfood"),
                    default=["sparse", "fastfood"], help="projections for the ResNet runs")
    ap.add_argument("--job-timeout", type=float, default=None,
                    help="seconds per ResNet row, the worker's start-up (a few s) included; a "
                         "row that takes longer is recorded as such")
    ap.add_argument("--chunks", type=int, nargs="*", default=None,
                    help="directions per block for the ResNet runs (default 1 16 on GPU: the "
                         "memory target, then speed; automatic on CPU)")
    ap.add_argument("--micro-batches", type=int, nargs="*", default=None,
                    help="extra ResNet rows computing the same Hessian in slices of these many "
                         "samples (subspace_hessian's batch_size; default: half the batch on "
                         "GPU, none on CPU)")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds from the start after which no ResNet row starts or runs on; "
                         "the JSON is saved after every row either way")
    ap.add_argument("--out", default=None, help="JSON path (default results/bench_scale_<dev>)")
    args = ap.parse_args()
    deadline = None if args.deadline is None else time.monotonic() + args.deadline
    dev = torch.device(args.device)
    path = Path(args.out) if args.out else RESULTS / f"bench_scale_{dev.type}.json"
    out = {"device": str(dev), "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
           "threads": torch.get_num_threads(), "environment": environment(str(dev))}
    if args.only in (None, "overhead"):
        D_target = 1_000_000 if dev.type == "cuda" else 200_000
        def save_overhead(rows, notes):
            write_json(path, dict(out, overhead=rows, overhead_notes=notes, partial=True))

        rows, notes = overhead(dev, D_target, args.d, args.batch, args.steps, args.repeats,
                               save_overhead)
        out["overhead"] = rows
        out["overhead_notes"] = notes
        table = [dict(r, step_ms=1e3 * r["step_s"]) for r in rows]
        print(format_table(table, [("method", "method", ""), ("D", "D", ",d"), ("d", "d", ",d"),
                                   ("step_ms", "ms/step", ".3f"), ("ratio", "x full", ".2f")]))
        print(f"Li et al. port: {notes['li_et_al_port']}")
        print("summary: overhead (x full-space step) " + ", ".join(
            f"{r['method']} {r['ratio']:.2f}" for r in rows if "ratio" in r))
    if args.only in (None, "scale"):
        batch = args.scale_batch or (128 if dev.type == "cuda" else 8)
        chunks = args.chunks or ([1, 16] if dev.type == "cuda" else [None])
        methods = args.methods or ["reverse"]
        micro = args.micro_batches
        if micro is None:
            micro = [batch // 2] if dev.type == "cuda" else []
        def save(rows):
            write_json(path, dict(out, scale=rows, partial=True))

        out["scale"] = scale(dev, args.d, batch, chunks, methods, args.kinds, args.job_timeout,
                             micro, deadline, save)
        out["scale_notes"] = (
            "ResNet-18 (CIFAR stem, eval-mode BatchNorm), float32, one random batch; each row "
            "in its own process; peak memory: " + out["scale"][0].get("memory", "n/a") +
            " above the "
            "memory in use at the start (CPU rows with d <= " + str(TENSOR_MAX_D) + ": "
            "tensor_peak_mib, the peak of live tensor bytes from the profiler's allocation "
            "events, which is what the GPU's max_memory_allocated counts; their resident-set "
            "peak includes the profiler's event log); budget = 2 x forward-backward peak + "
            "d^2 floats (over_budget, tensor_over_budget); chunk None = automatic; "
            "micro_batch = subspace_hessian's batch_size")
    out["environment"]["load_average_end"] = load_average()
    write_json(path, out)
    for row in out.get("scale", []):
        if row["what"] == "hessian":
            got = row.get("error") or row.get("skipped") or (
                f"timeout {row['timeout_s']:.0f} s" if "timeout_s" in row else
                f"{row['seconds_per_direction']:.3f} s/dir, "
                f"{row.get('over_budget', row.get('tensor_over_budget', float('nan'))):.2f}x "
                "budget")
            print(f"summary: ResNet-18 {row['kind']} chunk={row['chunk']} "
                  f"micro={row.get('micro_batch', row.get('micro'))}: {got}")
    print(f"load average: start {out['environment']['load_average_start']}, "
          f"end {out['environment']['load_average_end']}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
