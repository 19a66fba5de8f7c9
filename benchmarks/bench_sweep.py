"""Radius-sweep throughput: Fort's Figure-4 workload and the default `goldisk sweep`.

Fig-4 workload: MLP 784-200-200-10 (D = 199,210), 25 radii x 10 hyperplanes x d in
{10, 50, 100} (nested: one 100-direction Hessian per radius and hyperplane), 1,000
MNIST-shaped samples, float64. Prints the wall time, the operation count of the workload
(the floating-point floor: multiply-adds of the tangent passes, counted from layer shapes)
and the fraction of the device's peak reached, and a per-configuration comparison with a
loop of Hessian-vector products (the PyHessian-style double-backward loop) on the same device.

    python benchmarks/bench_sweep.py --device cuda            # Fig-4 workload on a GPU
    python benchmarks/bench_sweep.py --workload default       # default `goldisk sweep` on CPU
    python benchmarks/bench_sweep.py --workload default --compare-engines contract reverse

``--compare-engines``: only the sweep, once per engine and round (``--repeats``), the order
rotating every round, with the sweep's ``subspace_hessian`` calls pinned to that engine
(``method=``; ``contract`` is what ``method="auto"`` picks on CPU for this MLP), and the
largest difference of the sweep's statistics between engines.
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, write_json  # noqa: E402

import goldisk.sweep as sweep_mod  # noqa: E402
from goldisk._flat import ParamLayout, parameter_vector
from goldisk.curvature import per_sample_loss, subspace_hessian
from goldisk.datasets import load_digits
from goldisk.models import MLP, init_weights_
from goldisk.projections import make_projection
from goldisk.sweep import default_radii, radius_sweep

RESULTS = Path(__file__).parent / "results"


def tangent_flops(widths, n_samples, n_dirs):
    """Flops of the direction-dependent work of forward-over-reverse on an MLP.

    Per layer (n_in -> n_out), per sample and direction: tangent forward W dh + dW h
    (2 matmuls), tangent backward W^T dg + dW^T g and the two weight-gradient tangents
    (4 matmuls): 6 multiply-adds per weight = 12 flops per weight.
    """
    weights = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    return 12.0 * weights * n_samples * n_dirs


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def hvp_loop(net, X, y, P, device):
    """PyHessian-style: one double-backward HVP per direction, then P^T (H P e_i)."""
    layout = ParamLayout(net)
    w = parameter_vector(net).clone().requires_grad_(True)
    loss = per_sample_loss(layout.call(net, w, X), y).mean()
    (g,) = torch.autograd.grad(loss, w, create_graph=True)
    cols = []
    for i in range(P.d):
        e = torch.zeros(P.d, dtype=w.dtype, device=device)
        e[i] = 1
        v = P(e)
        (hv,) = torch.autograd.grad(g, w, v, retain_graph=True)
        cols.append(P.transpose(hv))
    return torch.stack(cols, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workload", choices=("fig4", "default"), default="fig4")
    ap.add_argument("--n-subspaces", type=int, default=None)
    ap.add_argument("--projection", default="dense")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="device fp64 peak for the fraction-of-floor line")
    ap.add_argument("--out", default=None, help="JSON path (default results/bench_sweep_...)")
    ap.add_argument("--compare-engines", nargs="+", metavar="METHOD",
                    help="time only the sweep, pinned to each subspace_hessian method")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    if args.workload == "fig4":
        widths = [784, 200, 200, 10]
        X = torch.randn(1000, 784, generator=gen)
        y = torch.randint(0, 10, (1000,), generator=gen)
        n_sub = args.n_subspaces or 10
        samples = 1000
    else:
        ds = load_digits()
        widths = [64, 100, 100, 10]
        X, y = torch.as_tensor(ds.X), torch.as_tensor(ds.y)
        n_sub = args.n_subspaces or 3
        samples = 1000
    model = MLP(widths[0], tuple(widths[1:-1]), widths[-1])
    radii = default_radii()
    dims = (10, 50, 100)
    # warm-up (CUDA context, kernels, forward-AD decompositions)
    radius_sweep(model, X, y, radii=radii[:1], dims=(10,), n_subspaces=1, max_samples=100,
                 device=device, progress=False)
    sync(device)
    if args.compare_engines:
        return compare_engines(args, model, X, y, radii, dims, n_sub, samples, device)
    t0 = time.perf_counter()
    df = radius_sweep(model, X, y, radii=radii, dims=dims, n_subspaces=n_sub,
                      projection=args.projection, max_samples=samples, batch_size=1000,
                      device=device, progress=False)
    sync(device)
    sweep_s = time.perf_counter() - t0
    units = len(radii) * n_sub
    flops = tangent_flops(widths, samples, max(dims)) * units
    # one configuration with the HVP loop, on the same device
    net = init_weights_(MLP(widths[0], tuple(widths[1:-1]), widths[-1]), "xavier", generator=0)
    net = net.to(device=device, dtype=torch.float64)
    P = make_projection("dense", ParamLayout(net).D, 100, random_state=0, device=device)
    Xd, yd = X[:samples].to(device, torch.float64), y[:samples].to(device)
    hvp_loop(net, Xd[:10], yd[:10], P, device)
    sync(device)
    t0 = time.perf_counter()
    H_loop = hvp_loop(net, Xd, yd, P, device)
    sync(device)
    loop_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    H_ours = subspace_hessian(net, Xd, yd, P, batch_size=1000).H
    sync(device)
    ours_s = time.perf_counter() - t0
    err = float((H_ours - H_loop).norm() / H_loop.norm())
    engines = {}  # one configuration by each engine (method="auto" picks one per device)
    for method in ("forward", "reverse"):
        subspace_hessian(net, Xd[:10], yd[:10], P, method=method)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        H_m = subspace_hessian(net, Xd, yd, P, batch_size=1000, method=method).H
        sync(device)
        engines[method] = {"seconds": time.perf_counter() - t0,
                           "rel_err_vs_loop": float((H_m - H_loop).norm() / H_loop.norm())}
    out = {
        "workload": args.workload, "device": str(device), "projection": args.projection,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "D": ParamLayout(model).D, "units": units, "rows": len(df), "sweep_seconds": sweep_s,
        "tangent_tflop": flops / 1e12, "achieved_tflops": flops / sweep_s / 1e12,
        "per_config_goldisk_s": ours_s, "per_config_hvp_loop_s": loop_s,
        "loop_over_goldisk": loop_s / ours_s,
        "projected_loop_sweep_s": loop_s * units, "sweep_speedup_vs_loop": loop_s * units / sweep_s,
        "rel_err_vs_loop": err, "per_config_by_engine": engines,
        "torch": torch.__version__, "python": sys.version.split()[0],
        "platform": platform.platform(), "threads": torch.get_num_threads(),
        "environment": environment(str(device)),
    }
    if args.peak_tflops:
        out["fraction_of_peak"] = out["achieved_tflops"] / args.peak_tflops
    for k, v in out.items():
        if k != "environment":
            print(f"{k:>26}: {v}")
    path = Path(args.out) if args.out else (
        RESULTS / f"bench_sweep_{args.workload}_{args.projection}_{device.type}.json")
    write_json(path, out)
    engines = ", ".join(f"{m} {e['seconds']:.3f} s" for m, e in engines.items())
    print(f"summary: {args.workload} sweep {sweep_s:.2f} s on {device.type} "
          f"({out['sweep_speedup_vs_loop']:.1f}x the HVP loop); per configuration: goldisk "
          f"{ours_s:.3f} s, HVP loop {loop_s:.3f} s, {engines}; saved {path}")


def compare_engines(args, model, X, y, radii, dims, n_sub, samples, device):
    """The sweep once per engine and round, round-robin; times, and agreement of the rows."""
    real = sweep_mod.subspace_hessian
    times, frames = {m: [] for m in args.compare_engines}, {}
    for rnd in range(args.repeats):
        k = rnd % len(args.compare_engines)
        for method in args.compare_engines[k:] + args.compare_engines[:k]:
            sweep_mod.subspace_hessian = functools.partial(real, method=method)
            try:
                t0 = time.perf_counter()
                frames[method] = radius_sweep(
                    model, X, y, radii=radii, dims=dims, n_subspaces=n_sub,
                    projection=args.projection, max_samples=samples, batch_size=1000,
                    device=device, progress=False)
                sync(device)
                times[method].append(time.perf_counter() - t0)
            finally:
                sweep_mod.subspace_hessian = real
            print(f"round {rnd}: {method} {times[method][-1]:.2f} s", flush=True)
    first = frames[args.compare_engines[0]]
    cols = ["trace_ratio", "frac_positive", "loss"]
    diff = {m: float((f[cols] - first[cols]).abs().max().max()) for m, f in frames.items()}
    med = {m: sorted(t)[len(t) // 2] for m, t in times.items()}
    out = {"workload": args.workload, "device": str(device), "projection": args.projection,
           "rows": len(first), "radii": len(radii), "dims": list(dims), "n_subspaces": n_sub,
           "samples": samples, "times_s": times, "median_s": med,
           "max_abs_diff_vs_first": diff, "threads": torch.get_num_threads(),
           "environment": environment(str(device)),
           "note": "round-robin on a shared 2-core machine (OMP_NUM_THREADS=1)"}
    path = Path(args.out) if args.out else (
        RESULTS / f"bench_sweep_{args.workload}_engines_{device.type}.json")
    write_json(path, out)
    print(f"median: {med}; largest difference of {cols} vs {args.compare_engines[0]}: "
          f"{diff}; saved {path}")


if __name__ == "__main__":
    main()
