"""Full-space Hutchinson estimates of Tr(H): goldisk against PyHessian, side by side.

Both estimators draw Rademacher probes ``v`` and average ``v^T H v`` over ``m`` probes, one
Hessian-vector product per probe; they differ in how the HVPs are computed:

``goldisk``      ``goldisk.curvature.hutchinson(..., gauss_newton=False)``: reverse-over-
                 reverse, one gradient graph per mini-batch, then one double backward per
                 probe through it, in blocks of ``--chunk-size`` probes (looped on the CPU,
                 one batched ``is_grads_batched`` double backward on a GPU); one call also
                 gives ``||H||_F^2`` from ``||H v||^2`` (no extra HVP; PyHessian has no
                 counterpart, so it is reported alone)
``goldisk+G``    the same with ``gauss_newton=True`` (also ``Tr(G)``, ``||G||_F^2``: ``J v``
                 from the same double backward, then one batched VJP per block)
``pyhessian``    PyHessian 0.1: ``hessian(model, criterion, data=(X, y))`` (one forward and a
                 ``create_graph=True`` backward), then ``.trace(maxIter=m, tol=-inf)``, one
                 double-backward HVP per probe, one probe at a time. ``trace()`` returns the
                 list of the per-probe values ``v^T H v``; its early stop
                 ``|mean - prev| / (prev + 1e-6) < tol`` can fire with ``tol=0`` once the
                 running mean is negative, so ``tol=-inf`` is passed and the list length is
                 checked to be ``m``.

Workloads:

``mlp784``  the workload of ``bench_hessian.py`` (issue 2): MLP 784-200-200-10, ReLU,
            biases, Xavier init (``generator=0``), D = 199,210, 1,000 standard-normal inputs
            with random labels (seed 0), mean cross-entropy, float64. No exact reference.
``digits``  MLP 64-32-10 (same init), D = 2,410, the first 500 samples of scikit-learn's
            digits (``goldisk.datasets.load_digits``, standardized), float64. The exact
            Hessian is ``subspace_hessian(net, X, y, projection=None)`` (the full D x D
            matrix), checked against one PyHessian HVP; every estimate's error is reported
            in units of its own standard error, ``z = (estimate - exact) / se``, and the
            sample variance per probe is compared with the exact Rademacher variance
            ``Var(v^T H v) = 2 (||H||_F^2 - sum_i H_ii^2)``.

Reported per (workload, method, m): median wall time over the repeats (after one warm-up
call with 2 probes; the methods are called round-robin, the order rotating every repeat, so
load from other processes hits all alike), time per probe, the ratio goldisk / pyhessian at
the same m, time per probe in gradient-equivalents (one full-batch gradient = 1), and the
per-probe sample variance of ``v^T H v`` (pooled over the repeats; each repeat uses fresh
probes) with the resulting standard error per probe ``sqrt(var)``. A least-squares line
``time = a + b m`` over the probe counts separates the fixed cost ``a`` (model copy,
forward/backward, PyHessian's gradient graph) from the marginal cost per probe ``b``.
Every (repeat, m, method) uses its own seed, so the methods' estimates are independent.

Consistency: on CPU, goldisk's generator seeded with ``s`` and PyHessian's ``randint_like``
after ``torch.manual_seed(s)`` draw the same +-1 stream (same parameter order), so the
warm-up calls of both, seeded alike, use the same probes; their estimates are compared
(``same_probe_check``: they must agree to rounding).

On a shared machine, pass ``--threads 1``: with torch's default of one thread per core and
another process busy on the same cores, every parallel region waits for a descheduled
thread, and the timings measure that (on the 2-core machine of the recorded run, one
gradient of the digits MLP took 63 ms with 2 threads against 0.8 ms with 1).

Usage::

    python benchmarks/bench_hutchinson.py            # m = 10 50 100, 3 repeats (~1.5 min, 1 thread)
    python benchmarks/bench_hutchinson.py --threads 1   # the recorded CPU run
    python benchmarks/bench_hutchinson.py --quick    # m = 10 50, 2 repeats (~30 s, 1 thread)
    python benchmarks/bench_hutchinson.py --device cuda    # skipped if CUDA is unavailable
    python benchmarks/bench_hutchinson.py --markdown benchmarks/results/bench_hutchinson_cpu.json

Results: a table on stdout and ``benchmarks/results/bench_hutchinson_<cpu|cuda>[_quick].json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS_DIR,
    environment,
    format_table,
    load_average,
    median,
    package_version,
    timed,
    write_json,
)
from _hutchinson_methods import (  # noqa: E402
    call,
    exact_reference,
    gradient_time,
    make_workload,
    n_params,
)

PROBES = (10, 50, 100)
QUICK_PROBES = (10, 50)
METHODS = ("goldisk", "goldisk+G", "pyhessian")
WORKLOADS = ("mlp784", "digits")
WARMUP_PROBES = 2


# ====================================================================== benchmark
def bench_workload(name, opts, methods, probes):
    net, X, y, desc = make_workload(name, n=opts.n if name == "mlp784" else None,
                                    device=opts.device)
    D = n_params(net)
    t_grad = gradient_time(net, X, y, device=opts.device)
    print(f"\n== {name}: {desc}; D = {D:,}, n = {len(X)}; one gradient {t_grad * 1e3:.1f} ms "
          f"({opts.device}, {torch.get_num_threads()} threads, load {load_average()})",
          flush=True)
    ref = None
    if name == "digits":
        ref = exact_reference(net, X, y)
        print(f"   exact Tr(H) = {ref['trace']:.6g}, ||H||_F^2 = {ref['frobenius2']:.6g}, "
              f"Var per probe of v^T H v = {ref['trace_var_per_probe']:.4g} "
              f"(D x D Hessian in {ref['seconds']:.1f} s; HVP check vs PyHessian "
              f"{ref.get('hvp_rel_err_vs_pyhessian', float('nan')):.1e})", flush=True)
    warm = {method: call(method, net, X, y, WARMUP_PROBES, seed=999, opts=opts)
            for method in methods}  # warm-up (forward-mode AD registration, allocator)
    same_probes = None
    if "pyhessian" in warm and "goldisk" in warm and not X.is_cuda:
        # On CPU, goldisk's generator seeded with s and PyHessian's randint_like after
        # torch.manual_seed(s) give the same +-1 stream (same parameter order), so both
        # estimate from the same probes: the estimates must agree to rounding.
        a, b = warm["goldisk"], warm["pyhessian"]
        same_probes = {"m": WARMUP_PROBES, "goldisk": [a["trace"], a["trace_se"]],
                       "pyhessian": [b["trace"], b["trace_se"]],
                       "trace_rel_diff": abs(a["trace"] - b["trace"]) / abs(b["trace"])}
        print(f"   same probes (seed 999, m={WARMUP_PROBES}): Tr goldisk {a['trace']:.12g}, "
              f"pyhessian {b['trace']:.12g}, rel diff {same_probes['trace_rel_diff']:.1e}",
              flush=True)

    runs = {(meth, m): [] for meth in methods for m in probes}
    for m in probes:
        for rep in range(opts.repeats):
            order = methods[rep % len(methods):] + methods[:rep % len(methods)]
            for method in order:
                # fresh probes for every (repeat, m, method); independent across methods
                seed = 10_000 * (rep + 1) + 1_000 * methods.index(method) + m
                load = load_average()
                c0 = time.process_time()
                out, t = timed(lambda method=method, seed=seed, m=m:
                               call(method, net, X, y, m, seed, opts), opts.device)
                out.update(time_s=t, cpu_s=time.process_time() - c0, seed=seed,
                           load_1min=load[0] if load else None)
                runs[(method, m)].append(out)
                print(f"   {method:10s} m={m:4d} rep {rep}: {t:8.3f} s "
                      f"(cpu {out['cpu_s']:7.2f} s)  "
                      f"Tr(H) = {out['trace']:.6g} +- {out['trace_se']:.3g}  "
                      f"load {out['load_1min']}", flush=True)

    rows = []
    for m in probes:
        for method in methods:
            rs = runs[(method, m)]
            times = [r["time_s"] for r in rs]
            var = statistics.fmean((r["trace_se"] * math.sqrt(m)) ** 2 for r in rs)
            row = {
                "workload": name, "method": method, "m": m, "D": D,
                "time_s": median(times), "times": times, "min_time_s": min(times),
                "cpu_s": [r["cpu_s"] for r in rs],
                "per_probe_ms": median(times) / m * 1e3,
                "min_per_probe_ms": min(times) / m * 1e3,
                "per_probe_grad_eq": median(times) / m / t_grad,
                "trace": [r["trace"] for r in rs], "trace_se": [r["trace_se"] for r in rs],
                "trace_var_per_probe": var, "trace_std_per_probe": math.sqrt(var),
                "seeds": [r["seed"] for r in rs], "load_1min": [r["load_1min"] for r in rs],
            }
            if method == "pyhessian":
                row["setup_s"] = [r["setup_s"] for r in rs]
                row["trace_only_s"] = [r["trace_s"] for r in rs]
                row["per_probe_values"] = [r["per_probe"] for r in rs]
            else:
                row["frobenius2"] = [r["frobenius2"] for r in rs]
                row["frobenius2_se"] = [r["frobenius2_se"] for r in rs]
                row["frobenius2_var_per_probe"] = statistics.fmean(
                    (r["frobenius2_se"] * math.sqrt(m)) ** 2 for r in rs)
                if method == "goldisk+G":
                    row["g_trace"] = [r["g_trace"] for r in rs]
                    row["g_trace_se"] = [r["g_trace_se"] for r in rs]
            if ref is not None:
                row["trace_z"] = [(t - ref["trace"]) / s
                                  for t, s in zip(row["trace"], row["trace_se"], strict=True)]
                row["trace_var_ratio_exact"] = var / ref["trace_var_per_probe"]
                if "frobenius2" in row:
                    row["frobenius2_z"] = [
                        (f - ref["frobenius2"]) / s
                        for f, s in zip(row["frobenius2"], row["frobenius2_se"], strict=True)]
            rows.append(row)
        py = next((r for r in rows if r["m"] == m and r["method"] == "pyhessian"), None)
        for r in rows:
            if r["m"] == m and py is not None:
                r["time_vs_pyhessian"] = r["time_s"] / py["time_s"]
                r["min_time_vs_pyhessian"] = r["min_time_s"] / py["min_time_s"]
                r["var_vs_pyhessian"] = r["trace_var_per_probe"] / py["trace_var_per_probe"]

    fits = {}
    if len(probes) >= 2:  # time = a + b m, least squares over the fastest runs
        for method in methods:  # (the minimum: least disturbed by other processes)
            ms = [r["m"] for r in rows if r["method"] == method]
            ts = [r["min_time_s"] for r in rows if r["method"] == method]
            b, a = statistics.linear_regression(ms, ts)
            fits[method] = {"fixed_s": a, "per_probe_ms": b * 1e3,
                            "per_probe_grad_eq": b / t_grad}
        if "pyhessian" in fits:
            for f in fits.values():
                f["per_probe_vs_pyhessian"] = f["per_probe_ms"] / fits["pyhessian"]["per_probe_ms"]
    return {"workload": name, "description": desc, "D": D, "n": len(X),
            "t_grad_s": t_grad, "exact": ref, "same_probe_check": same_probes,
            "rows": rows, "fits": fits}


# ====================================================================== output
def _z(zs):
    return ",".join(f"{z:+.1f}" for z in zs) if zs else None


def print_tables(results):
    cols = [("workload", "workload", "s"), ("method", "method", "s"), ("m", "m", "d"),
            ("time_s", "median [s]", ".3f"), ("min_time_s", "min [s]", ".3f"),
            ("per_probe_ms", "per probe [ms]", ".1f"),
            ("min_per_probe_ms", "min/probe [ms]", ".1f"),
            ("per_probe_grad_eq", "per probe [grad]", ".2f"),
            ("time_vs_pyhessian", "x pyh", ".2f"),
            ("min_time_vs_pyhessian", "x pyh (min)", ".2f"),
            ("trace_mean", "Tr(H) est", ".5g"),
            ("trace_std_per_probe", "SE per probe", ".4g"),
            ("var_vs_pyhessian", "var x pyh", ".2f"),
            ("z", "z vs exact", "s")]
    rows = []
    for res in results:
        for r in res["rows"]:
            rows.append({**r, "trace_mean": statistics.fmean(r["trace"]),
                         "z": _z(r.get("trace_z"))})
    print()
    print(format_table(rows, cols))
    print("\nfixed cost + marginal cost per probe, least squares min time = a + b m:")
    frows = [{"workload": res["workload"], "method": k, **f}
             for res in results for k, f in res["fits"].items()]
    print(format_table(frows, [("workload", "workload", "s"), ("method", "method", "s"),
                               ("fixed_s", "a [s]", ".3f"), ("per_probe_ms", "b [ms]", ".1f"),
                               ("per_probe_grad_eq", "b [grad]", ".2f"),
                               ("per_probe_vs_pyhessian", "b x pyhessian", ".2f")]))
    frob = [{**r, "f_mean": statistics.fmean(r["frobenius2"]),
             "f_se": statistics.fmean(r["frobenius2_se"]),
             "f_std": math.sqrt(r["frobenius2_var_per_probe"]),
             "z": _z(r.get("frobenius2_z"))}
            for res in results for r in res["rows"] if "frobenius2" in r]
    if frob:
        print("\n||H||_F^2 (goldisk only, from the same HVPs; PyHessian has no counterpart):")
        print(format_table(frob, [("workload", "workload", "s"), ("method", "method", "s"),
                                  ("m", "m", "d"), ("f_mean", "||H||_F^2 est", ".5g"),
                                  ("f_se", "SE", ".3g"), ("f_std", "SE per probe", ".3g"),
                                  ("z", "z vs exact", "s")]))
    for res in results:
        if res["exact"]:
            e = res["exact"]
            print(f"\n{res['workload']} exact: Tr(H) = {e['trace']:.6g}, ||H||_F^2 = "
                  f"{e['frobenius2']:.6g}, Rademacher SE per probe of v^T H v = "
                  f"{math.sqrt(e['trace_var_per_probe']):.4g}, of ||Hv||^2 = "
                  f"{math.sqrt(e['frobenius2_var_per_probe']):.4g}")


def markdown_table(payload) -> str:
    """The timing/variance rows of a result file as a Markdown table (docs/performance.md)."""
    lines = ["| workload | method | m | median [s] | min [s] | per probe [ms] (median / min) "
             "| per probe [grad] | x pyhessian (median / min) | Tr(H) (mean of runs) "
             "| SE per probe | z vs exact (per run) | load (1 min) |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|"]
    for res in payload["results"]:
        for r in res["rows"]:
            ratio, rmin = r.get("time_vs_pyhessian"), r.get("min_time_vs_pyhessian")
            load = [x for x in r["load_1min"] if x is not None] or [float("nan")]
            lines.append(
                f"| {r['workload']} | {r['method']} | {r['m']} | {r['time_s']:.2f} "
                f"| {r['min_time_s']:.2f} "
                f"| {r['per_probe_ms']:.1f} / {r['min_per_probe_ms']:.1f} "
                f"| {r['per_probe_grad_eq']:.2f} "
                f"| {'-' if ratio is None else f'{ratio:.2f} / {rmin:.2f}'} "
                f"| {statistics.fmean(r['trace']):.4g} | {r['trace_std_per_probe']:.3g} "
                f"| {_z(r.get('trace_z')) or '-'} | {min(load):.1f}-{max(load):.1f} |")
    lines += ["", "| workload | method | fixed [s] | marginal per probe [ms] (min times) "
              "| per probe [grad] | x pyhessian |", "|---|---|--:|--:|--:|--:|"]
    for res in payload["results"]:
        for k, f in res["fits"].items():
            ratio = f.get("per_probe_vs_pyhessian")
            lines.append(f"| {res['workload']} | {k} | {f['fixed_s']:.2f} "
                         f"| {f['per_probe_ms']:.1f} | {f['per_probe_grad_eq']:.2f} "
                         f"| {'-' if ratio is None else f'{ratio:.2f}'} |")
    return "\n".join(lines)


def _source_hash(*rel):
    root = Path(__file__).resolve().parent.parent
    return {r: hashlib.sha256((root / r).read_bytes()).hexdigest()[:16]
            for r in rel if (root / r).exists()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"m in {QUICK_PROBES}, 2 repeats (~30 s with --threads 1)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (skipped if unavailable)")
    ap.add_argument("--probes", type=int, nargs="+", help=f"probe counts (default {PROBES})")
    ap.add_argument("--repeats", type=int, help="runs per (method, m) (default 3, quick 2)")
    ap.add_argument("--methods", nargs="+", choices=METHODS)
    ap.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    ap.add_argument("--n", type=int, default=1000, help="samples of the mlp784 workload")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="goldisk's batch_size (default n: one batch, like PyHessian's data=)")
    ap.add_argument("--chunk-size", type=int, default=16, help="goldisk's chunk_size")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--markdown", metavar="JSON", help="print a result file as Markdown")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(Path(args.markdown).read_text())))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: torch.cuda.is_available() is False; skipped.")
        return 0
    probes = tuple(args.probes or (QUICK_PROBES if args.quick else PROBES))
    args.repeats = args.repeats or (2 if args.quick else 3)
    methods = list(args.methods or METHODS)
    missing = []
    if "pyhessian" in methods and package_version("pyhessian") is None:
        methods.remove("pyhessian")
        missing.append("pyhessian")
        print("pyhessian is not installed (pip install pyhessian): skipped")

    t_start = time.perf_counter()
    env = environment(args.device)
    env["source_sha256"] = _source_hash("goldisk/curvature/_hutchinson.py",
                                        "goldisk/curvature/_hessian.py")
    device_tag = "cuda" if args.device.startswith("cuda") else "cpu"
    out_path = Path(args.out or RESULTS_DIR / f"bench_hutchinson_{device_tag}"
                    f"{'_quick' if args.quick else ''}.json")

    load, cores = load_average(), env.get("affinity") or env.get("cpu_count") or 1
    if load and load[0] > cores - 0.5 and torch.get_num_threads() > 1:
        print(f"warning: load average {load[0]} on {cores} cores: other processes are "
              "running; multi-threaded timings of small ops then measure thread-barrier "
              "waits (consider --threads 1)", flush=True)
    results = [bench_workload(w, args, methods, probes) for w in args.workloads]
    print_tables(results)
    if missing:
        print(f"\nnot installed, skipped: {missing}")
    env["load_average_end"] = load_average()
    payload = {
        "benchmark": "bench_hutchinson",
        "settings": {"probes": list(probes), "methods": methods, "repeats": args.repeats,
                     "warmup_probes": WARMUP_PROBES, "quick": args.quick,
                     "goldisk_batch_size": args.batch_size or "n (one batch)",
                     "goldisk_chunk_size": args.chunk_size, "dtype": "float64",
                     "loss": "mean cross-entropy",
                     "pyhessian_call": "hessian(net, CrossEntropyLoss(), data=(X, y))"
                                       ".trace(maxIter=m, tol=-inf)",
                     "command": " ".join(["python", *sys.argv])},
        "environment": env,
        "results": results,
        "skipped_not_installed": missing,
        "total_seconds": time.perf_counter() - t_start,
    }
    print(f"\nwrote {write_json(out_path, payload)} ({payload['total_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
