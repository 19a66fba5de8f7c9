"""The methods of ``bench_hutchinson.py``: its workloads, goldisk's and PyHessian's
Hutchinson estimates, and the exact reference from the ``D x D`` Hessian. Imported by the
benchmark's driver; see ``bench_hutchinson.py`` for what each method is.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings

import torch
from _common import median, package_version, timed

from goldisk.curvature import hutchinson, subspace_hessian
from goldisk.models import MLP, init_weights_


# ====================================================================== workloads
def make_workload(name, n=None, seed=0, dtype=torch.float64, device="cpu"):
    """``(net, X, y, description)`` of workload ``name`` (see the module docstring)."""
    if name == "mlp784":  # identical to bench_hessian.make_workload
        n = n or 1000
        net = init_weights_(MLP(784, (200, 200), 10), "xavier", generator=seed)
        g = torch.Generator().manual_seed(seed)
        X = torch.randn(n, 784, generator=g, dtype=dtype)
        y = torch.randint(0, 10, (n,), generator=g)
        desc = (f"MLP 784-200-200-10 ReLU, biases, xavier (generator={seed}); {n} "
                f"standard-normal inputs, random labels (seed {seed})")
    elif name == "digits":
        from goldisk.datasets import load_digits

        n = n or 500
        ds = load_digits(standardize=True)
        net = init_weights_(MLP(64, (32,), 10), "xavier", generator=seed)
        X = torch.as_tensor(ds.X[:n], dtype=dtype)
        y = torch.as_tensor(ds.y[:n])
        desc = (f"MLP 64-32-10 ReLU, biases, xavier (generator={seed}); first {n} samples "
                "of load_digits(standardize=True)")
    else:
        raise ValueError(name)
    net = net.to(device=device, dtype=dtype).eval()
    return net, X.to(device), y.to(device), desc


def n_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def gradient_time(net, X, y, repeats=5, device="cpu"):
    """Median time of one full-batch gradient of the mean loss (the cost unit)."""
    params = list(net.parameters())

    def g():
        return torch.autograd.grad(torch.nn.functional.cross_entropy(net(X), y), params)

    for _ in range(2):
        g()
    return median([timed(g, device)[1] for _ in range(repeats)])


# ====================================================================== methods
def run_goldisk(net, X, y, m, seed, *, gauss_newton, batch_size, chunk_size):
    r = hutchinson(net, X, y, n_probes=m, gauss_newton=gauss_newton, batch_size=batch_size,
                   chunk_size=chunk_size, random_state=seed, dtype=X.dtype, device=X.device)
    out = {"trace": r["trace"], "trace_se": r["trace_se"],
           "frobenius2": r["frobenius2"], "frobenius2_se": r["frobenius2_se"]}
    if gauss_newton:
        out.update(g_trace=r["g_trace"], g_trace_se=r["g_trace_se"],
                   g_frobenius2=r["g_frobenius2"], g_frobenius2_se=r["g_frobenius2_se"])
    return out


def _pyhessian_class():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyhessian import hessian
    return hessian


def run_pyhessian(net, X, y, m, seed, **_):
    """PyHessian's own ``hessian(...).trace``: ``m`` Rademacher probes, per-probe values."""
    PyHessian = _pyhessian_class()
    for p in net.parameters():  # its constructor accumulates into .grad
        p.grad = None
    torch.manual_seed(seed)  # trace() draws its probes from the global generator
    sync = X.is_cuda
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_graph=True reference-cycle warning
        hc = PyHessian(net, torch.nn.CrossEntropyLoss(), data=(X, y), cuda=X.is_cuda)
    if sync:
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    vals = hc.trace(maxIter=m, tol=float("-inf"))
    if sync:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    if len(vals) != m:
        raise RuntimeError(f"pyhessian trace stopped after {len(vals)} of {m} probes")
    for p in net.parameters():  # break the create_graph reference cycle
        p.grad = None
    del hc
    vals = [float(v) for v in vals]
    mean = statistics.fmean(vals)
    se = statistics.stdev(vals) / math.sqrt(m) if m > 1 else float("nan")
    return {"trace": mean, "trace_se": se, "per_probe": vals,
            "setup_s": t1 - t0, "trace_s": t2 - t1}


def call(method, net, X, y, m, seed, opts):
    if method == "pyhessian":
        return run_pyhessian(net, X, y, m, seed)
    return run_goldisk(net, X, y, m, seed, gauss_newton=method == "goldisk+G",
                       batch_size=opts.batch_size or len(X), chunk_size=opts.chunk_size)


# ====================================================================== exact reference
def exact_reference(net, X, y):
    """Exact ``Tr(H)``, ``||H||_F^2`` and the per-probe Rademacher variances, from the D x D H.

    ``H`` is checked against one PyHessian HVP on a Rademacher vector (an independent code
    path: double backward through ``nn.CrossEntropyLoss``).
    """
    t0 = time.perf_counter()
    H = subspace_hessian(net, X, y, None, gauss_newton=False, batch_size=len(X),
                         dtype=X.dtype).H
    t_exact = time.perf_counter() - t0
    H = 0.5 * (H + H.T)
    d = torch.diagonal(H)
    H2 = H @ H
    ref = {
        "D": H.shape[0],
        "trace": float(d.sum()),
        "frobenius2": float((H * H).sum()),
        # Var(v^T A v) = 2 (||A||_F^2 - sum_i A_ii^2) for symmetric A, Rademacher v
        "trace_var_per_probe": float(2 * ((H * H).sum() - (d * d).sum())),
        "frobenius2_var_per_probe": float(2 * ((H2 * H2).sum()
                                               - (torch.diagonal(H2) ** 2).sum())),
        "seconds": t_exact,
        "method": "goldisk.curvature.subspace_hessian(net, X, y, None, gauss_newton=False)",
    }
    if package_version("pyhessian"):
        from pyhessian.utils import hessian_vector_product

        from goldisk._flat import ParamLayout

        g = torch.Generator().manual_seed(123)
        v = (torch.randint(0, 2, (ref["D"],), generator=g) * 2 - 1).to(X.device, X.dtype)
        for p in net.parameters():
            p.grad = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hc = _pyhessian_class()(net, torch.nn.CrossEntropyLoss(), data=(X, y),
                                    cuda=X.is_cuda)
        hv = hessian_vector_product(hc.gradsH, hc.params,
                                    list(ParamLayout(net).unflatten(v).values()))
        hv = torch.cat([t.reshape(-1) for t in hv])
        for p in net.parameters():
            p.grad = None
        del hc
        ref["hvp_rel_err_vs_pyhessian"] = float((H @ v - hv).norm() / hv.norm())
    return ref
