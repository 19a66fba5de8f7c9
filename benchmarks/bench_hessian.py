"""Subspace Hessian ``P^T H P``: goldisk against its peers, side by side in one run.

Workload (issue 2): MLP 784-200-200-10 with ReLU and biases (D = 199,210), Xavier init
(``init_weights_(net, "xavier", generator=0)``), 1,000 standard-normal inputs with random
labels (seeded), mean cross-entropy, float64, ``d`` in {10, 50, 100, 200}, a dense
orthonormal ``P = make_projection("dense", D, d, random_state=0)``.

Methods (all give the same d x d matrix ``P^T H P`` up to rounding):

``goldisk``           ``subspace_hessian(..., gauss_newton=False)``, dense P (the H-only row);
                      ``method="auto"``: the contraction engine on CPU for this MLP,
                      forward-over-reverse on CUDA
``goldisk+G``         the same with ``gauss_newton=True`` (H and G)
``goldisk-reverse``   ``method="reverse"`` (the CPU default before the contraction engine)
``goldisk-G``         ``subspace_gauss_newton``: G alone (compared with ``goldisk+G``'s G)
``curvlinops-ggn``    ``GGNLinearOperator(model, loss, params, data) @ P``, then ``P^T``
``goldisk-sparse``, ``goldisk-fastfood``: goldisk with that ``make_projection`` kind
``autograd``          ``torch.autograd.functional.hessian`` of ``theta -> loss(w0 + P theta)``
``autograd-vec``      the same with ``vectorize=True``
``hvp-loop``          PyHessian-style: one gradient with ``create_graph=True``, then for each
                      direction one double-backward HVP ``grad(g, w, grad_outputs=P e_i)``,
                      then ``P^T (H P e_i)`` (P^T applied to blocks of 16 HVPs)
``pyhessian``         PyHessian 0.1 itself: ``pyhessian.hessian(model, criterion, data=...)``
                      and its ``utils.hessian_vector_product`` on ``P e_i`` (its public API
                      offers eigenvalues/trace/density only, no HVP on given vectors)
``curvlinops``        ``HessianLinearOperator(model, loss, params, data) @ P``, then ``P^T``

Variants of goldisk's engine (``--variants``), measured for ``docs/performance.md``:

``goldisk-forward``   goldisk with ``method="forward"`` (``vmap(jvp(grad))``, the GPU default)
``goldisk-chunk=d``   goldisk itself with ``chunk_size=d`` (one vectorized pass)
``rr-vmap``           reverse-over-reverse: the hvp-loop vectorized over blocks of 16
                      directions with ``is_grads_batched=True``

Every (method, d) runs in its own worker subprocess (``--worker``), so the reported peak
memory (resident-set high-water mark above the memory in use before the first timed call,
or ``torch.cuda.max_memory_allocated`` on GPU) is that method's alone. The workers of one
``d`` live together and are called round-robin, the order rotating every round, so load
from other processes on a shared machine hits every method alike.

Cost per direction is in *gradient-equivalents*: ``time / d / t_grad`` with ``t_grad`` the
time of one full-batch gradient of the same loss on the same data.

Usage::

    python benchmarks/bench_hessian.py            # full: d = 10 50 100 200, 3 repeats
    python benchmarks/bench_hessian.py --quick    # (--device cuda; --check-allocations)

Results: a table on stdout and ``benchmarks/results/bench_hessian_<device>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS_DIR,
    PeakMemory,
    environment,
    format_table,
    load_average,
    median,
    timed,
    write_json,
)
from _hessian_methods import (  # noqa: E402
    CONTRACT,
    DIMS,
    GOLDISK,
    GRAD_REPEATS,
    GRADIENT,
    METHODS,
    PEERS,
    QUICK_DIMS,
    VARIANTS,
    _mean_ce,
    available,
    check_allocations,
    compute_hessian,
    gradient_time,
    make_P,
    make_workload,
    n_params,
    projection_kind,
)


# ====================================================================== worker
def _engine_hash():
    """Short hash of the goldisk engine file this process imported (it may change)."""
    import goldisk.curvature._hessian as eng

    return hashlib.sha256(Path(eng.__file__).read_bytes()).hexdigest()[:16]


def serve(args) -> None:
    """Worker process for one (method, d): set up, then obey ``run`` / ``finish`` lines.

    ``warm`` calls the method once on a ``d <= 4`` subspace of the same kind (the
    process's one-time costs: torch's lazy imports, about 2-3 s, and allocator warm-up).
    Each ``run`` computes the Hessian once and answers ``{"t": wall, "cpu": process CPU
    seconds, "load": 1-min load}``; ``finish`` saves the last H (and G) to ``--save`` and
    answers the peak memory of all runs above the memory in use before the first.
    """
    torch.manual_seed(0)
    engine_sha = _engine_hash()
    net, X, y = make_workload(n=args.n, device=args.device)
    P = make_P(projection_kind(args.worker), n_params(net), args.dim, device=args.device)
    if args.worker == GRADIENT:  # the cost unit, timed in the same rounds as the methods
        params = [p for p in net.parameters() if p.requires_grad]

        def call():
            for _ in range(GRAD_REPEATS):
                torch.autograd.grad(_mean_ce(net, X, y), params)
            return None, None
    else:
        P_warm = make_P(projection_kind(args.worker), n_params(net), min(args.dim, 4),
                        device=args.device)

        def call(P=P):
            return compute_hessian(args.worker, net, X, y, P, batch_size=args.batch_size,
                                   chunk_size=args.chunk_size)
    per = GRAD_REPEATS if args.worker == GRADIENT else 1
    mem = PeakMemory(args.device)
    started = False
    H = G = None
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "warm":  # one-time costs (lazy imports, allocator) on a d <= 4 subspace
            if args.worker == GRADIENT:
                call()
            else:
                call(P_warm)
            reply = {"warm": True}
        elif cmd == "run":
            if not started:
                mem.__enter__()
                started = True
            c0 = time.process_time()
            (H, G), t = timed(call, args.device)
            reply = {"t": t / per, "cpu": (time.process_time() - c0) / per,
                     "load": load_average()[0]}
        elif cmd == "finish":
            mem.__exit__(None, None, None)
            torch.save({"H": None if H is None else H.cpu(),
                        "G": None if G is None else G.cpu()}, args.save)
            reply = {"peak_mib": mem.peak_mib, "memory_method": mem.method,
                     "engine_sha256": engine_sha}
        else:
            break
        print(json.dumps(reply), flush=True)
        if cmd == "finish":
            break


class Worker:
    """Parent side of :func:`serve`: one subprocess per (method, d)."""

    def __init__(self, method, d, opts, save):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method,
               "--dim", str(d), "--n", str(opts.n), "--device", opts.device,
               "--batch-size", str(opts.batch_size), "--save", save]
        if opts.chunk_size:
            cmd += ["--chunk-size", str(opts.chunk_size)]
        if opts.threads:
            cmd += ["--threads", str(opts.threads)]
        self.method, self.error = method, None
        self.runs, self.spent = [], 0.0
        self.stderr = open(save + ".stderr", "w+")  # a file: a full pipe would block
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)

    def ready(self):
        return self._reply()
    def _reply(self):
        if self.error:
            return None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.stderr.seek(0)
                tail = self.stderr.read().strip().splitlines()[-3:]
                self.error = " | ".join(tail) or "worker died"
                return None
            if line.startswith("{"):
                return json.loads(line)

    def ask(self, cmd):
        if self.error:
            return None
        try:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        return self._reply()

    def run(self):
        r = self.ask("run")
        if r:
            self.runs.append(r)
            self.spent += r["t"]
        return r

    def finish(self):
        r = self.ask("finish")
        if self.proc.poll() is None:
            self.proc.stdin.close()
        self.proc.wait()
        self.stderr.close()
        return r


# ====================================================================== driver
def markdown_table(payload) -> str:
    """The results of a JSON file as a Markdown table (used for docs/performance.md)."""
    lines = ["| method | d | median [s] | min [s] | runs | per dir [grad] | x goldisk "
             "| rel err (ref) | peak [MiB] | load (1 min) |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in payload["results"]:
        if "time_s" not in r:
            lines.append(f"| {r['method']} | {r['d']} | failed: {r.get('error')} |||||||")
            continue
        ratio = r.get("time_vs_goldisk")
        load = r.get("load_1min") or []
        lines.append(
            f"| {r['method']} | {r['d']} | {r['time_s']:.2f} | {min(r['times']):.2f} "
            f"| {len(r['times'])} | {r['per_dir_grad_eq']:.2f} "
            f"| {'-' if ratio is None else f'{ratio:.2f}'} "
            f"| {r['rel_err']:.0e} ({r['reference']}) | {r['peak_mib']:.0f} "
            f"| {min(load):.1f}-{max(load):.1f} |")
    return "\n".join(lines)


def rel_err(A, B) -> float:
    return float(torch.linalg.matrix_norm(A - B) / torch.linalg.matrix_norm(B))


def bench_dim(d, methods, opts, tmp, ref_max_d):
    """Time every method at ``d``: all workers alive, runs interleaved round-robin."""
    workers = {}
    for m in (GRADIENT, *methods):
        if m.startswith("autograd") and d > ref_max_d:
            continue
        workers[m] = Worker(m, d, opts, str(tmp / f"{m}_{d}.pt"))
    for w in workers.values():  # started together, waited for together
        w.ready()
    names = list(workers)
    for _ in range(opts.warmup):
        for w in workers.values():
            w.ask("warm")
    for rnd in range(opts.repeats):
        k = rnd % len(names)
        for m in names[k:] + names[:k]:  # rotate the order every round
            w = workers[m]
            if rnd > 0 and w.spent > opts.max_seconds:
                continue  # enough of a slow method: at least one timed run is kept
            w.run()
    rows, Hs = [], {}
    for m, w in workers.items():
        fin = w.finish()
        row = {"method": m, "d": d, "projection": projection_kind(m)}
        if w.error or not fin:
            row["error"] = w.error
        else:
            timed_runs = w.runs
            row.update({
                "time_s": median([r["t"] for r in timed_runs]),
                "cpu_s": median([r["cpu"] for r in timed_runs]),
                "times": [r["t"] for r in timed_runs],
                "load_1min": [r["load"] for r in timed_runs],
                **fin,
            })
            Hs[m] = torch.load(w.proc.args[w.proc.args.index("--save") + 1])
        rows.append(row)
    grad_row = rows.pop(0)
    Hs.pop(GRADIENT, None)
    return rows, Hs, grad_row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"d in {QUICK_DIMS}, 2 repeats (1 past 15 s), autograd only at "
                         "d=10 (~10 min on 2 cores)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dims", type=int, nargs="+")
    ap.add_argument("--methods", nargs="+", help="subset of: " + " ".join(METHODS))
    ap.add_argument("--variants", action="store_true",
                    help="also time goldisk-forward, goldisk-chunk=d and rr-vmap")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="stop repeating a (method, d) once its runs took this long")
    ap.add_argument("--ref-max-d", type=int,
                    help="largest d at which autograd (the reference) runs; above it the "
                         "reference is hvp-loop (default 50, quick 10)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="mini-batch for every method that batches (default: n, one batch)")
    ap.add_argument("--chunk-size", type=int, default=None, help="goldisk's chunk_size")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--check-allocations", action="store_true",
                    help="only run the allocation audit")
    ap.add_argument("--no-audit", action="store_true", help="skip the allocation audit")
    ap.add_argument("--markdown", metavar="JSON", help="print a result file as Markdown")
    # worker mode (internal)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batch_size = args.batch_size or args.n
    if args.worker:
        serve(args)
        return 0
    if args.markdown:
        print(markdown_table(json.loads(Path(args.markdown).read_text())))
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")

    dims = tuple(args.dims or (QUICK_DIMS if args.quick else DIMS))
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.max_seconds = args.max_seconds or (15.0 if args.quick else 90.0)
    ref_max_d = args.ref_max_d if args.ref_max_d is not None else (10 if args.quick else 50)
    methods = list(args.methods or (*GOLDISK, *CONTRACT, *PEERS,
                                    *(VARIANTS if args.variants else ())))
    missing = [m for m in methods if not available(m)]
    methods = [m for m in methods if m not in missing]
    t_start = time.perf_counter()
    env = environment(args.device)
    src = Path(__file__).resolve().parent.parent / "goldisk" / "curvature" / "_hessian.py"
    if src.exists():  # the engine under test may change between runs: record which one
        env["goldisk_hessian_sha256"] = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    device_tag = "cuda" if args.device.startswith("cuda") else "cpu"
    out_path = Path(args.out or RESULTS_DIR / f"bench_hessian_{device_tag}.json")

    audit = []
    if not args.no_audit or args.check_allocations:
        audit = check_allocations(device=args.device)
        print(format_table(audit, [
            ("projection", "P", "s"), ("d", "d", "d"), ("chunk_size", "chunk", ""),
            ("largest_numel", "largest tensor", ",d"), ("largest_shape", "shape", ""),
            ("largest_op", "op", "s"), ("limit_name", "limit", "s"),
            ("limit", "limit value", ",d"), ("ok", "ok", "")]))
        if args.check_allocations:
            write_json(out_path.with_name(f"allocations_{device_tag}.json"),
                       {"environment": env, "audit": audit})
            return 0

    net, X, y = make_workload(n=args.n, device=args.device)
    D = n_params(net)
    t_grad = gradient_time(net, X, y, device=args.device)
    print(f"D = {D:,}, n = {args.n}, one full-batch gradient: {t_grad * 1e3:.1f} ms "
          f"({args.device}, {torch.get_num_threads()} threads, load {load_average()})",
          flush=True)

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_hessian_"))
    for d in dims:
        drows, Hs, grad_row = bench_dim(d, methods, args, tmp, ref_max_d)
        t_grad_d = grad_row.get("time_s", t_grad)  # timed in the same rounds
        print(f"d = {d}: one full-batch gradient {t_grad_d * 1e3:.1f} ms "
              f"(runs {grad_row.get('times')})")
        # references: autograd with the same projection at small d, else hvp-loop
        refs = {}
        for kind in {projection_kind(m) for m in Hs}:
            ref_method = "autograd" if d <= ref_max_d else "hvp-loop"
            if kind == "dense" and ref_method in Hs:
                refs[kind] = (Hs[ref_method]["H"], ref_method)
            else:
                P = make_P(kind, D, d, device=args.device)
                refs[kind] = (compute_hessian(ref_method, net, X, y, P,
                                              batch_size=args.batch_size)[0].cpu(), ref_method)
        base = next((r for r in drows if r["method"] == "goldisk" and "time_s" in r), None)
        for r in drows:
            if r["method"] not in Hs:
                print(f"  d={d:4d} {r['method']:18s} FAILED: {r.get('error')}")
                continue
            r["t_grad_s"] = t_grad_d
            r["per_dir_grad_eq"] = r["time_s"] / d / t_grad_d
            H_ref, ref_name = refs[r["projection"]]
            if Hs[r["method"]]["H"] is None:  # G alone: against another method's G
                ref_name = next(m for m in ("goldisk+G", "curvlinops-ggn", r["method"]) if m in Hs)
                H_ref, Hs[r["method"]]["H"] = Hs[ref_name]["G"], Hs[r["method"]]["G"]
            r["reference"] = ref_name
            r["rel_err"] = rel_err(Hs[r["method"]]["H"], H_ref)
            if base:
                r["time_vs_goldisk"] = r["time_s"] / base["time_s"]
                r["mem_vs_goldisk"] = (r["peak_mib"] / base["peak_mib"]
                                       if base["peak_mib"] else None)
            if Hs[r["method"]]["G"] is not None and "goldisk+G" in Hs:
                r["G_rel_err_vs_goldisk"] = rel_err(Hs[r["method"]]["G"],
                                                    Hs["goldisk+G"]["G"])
            print(f"  d={d:4d} {r['method']:18s} {r['time_s']:9.3f} s "
                  f"(cpu {r['cpu_s']:8.2f} s, runs {len(r['times'])}) "
                  f"peak {r['peak_mib']:8.1f} MiB  err {r['rel_err']:.1e}  "
                  f"load {r['load_1min']}", flush=True)
        rows += drows

    cols = [("method", "method", "s"), ("d", "d", "d"), ("time_s", "time [s]", ".3f"),
            ("per_dir_grad_eq", "per dir [grad]", ".2f"),
            ("time_vs_goldisk", "x goldisk", ".2f"), ("rel_err", "rel err", ".1e"),
            ("reference", "ref", "s"), ("peak_mib", "peak [MiB]", ".0f"),
            ("mem_vs_goldisk", "mem x gk", ".2f")]
    print()
    print(format_table(rows, cols))
    if missing:
        print(f"\nnot installed, skipped: {missing}")
    env["load_average_end"] = load_average()
    payload = {
        "benchmark": "bench_hessian",
        "workload": {"model": "MLP 784-200-200-10 ReLU, biases, xavier (generator=0)",
                     "D": D, "n": args.n, "inputs": "standard normal, random labels, seed 0",
                     "loss": "mean cross-entropy", "dtype": "float64",
                     "projection": "make_projection(kind, D, d, random_state=0)",
                     "batch_size": args.batch_size, "goldisk_chunk_size": args.chunk_size},
        "settings": {"dims": list(dims), "methods": methods, "repeats": args.repeats,
                     "warmup": args.warmup, "max_seconds": args.max_seconds,
                     "ref_max_d": ref_max_d, "quick": args.quick,
                     "command": " ".join(["python", *sys.argv])},
        "t_grad_s": t_grad,
        "environment": env,
        "results": rows,
        "allocation_audit": audit,
        "skipped_not_installed": missing,
        "total_seconds": time.perf_counter() - t_start,
    }
    print(f"\nwrote {write_json(out_path, payload)} "
          f"({payload['total_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
