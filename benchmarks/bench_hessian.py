"""Subspace Hessian ``P^T H P``: goldisk against its peers, side by side in one run.

Workload (issue 2): MLP 784-200-200-10 with ReLU and biases (D = 199,210), Xavier init
(``init_weights_(net, "xavier", generator=0)``), 1,000 standard-normal inputs with random
labels (seeded), mean cross-entropy, float64, ``d`` in {10, 50, 100, 200}, a dense
orthonormal ``P = make_projection("dense", D, d, random_state=0)``.

Methods (all give the same d x d matrix ``P^T H P`` up to rounding):

``goldisk``           ``subspace_hessian(..., gauss_newton=False)``, dense P (the H-only row);
                      ``method="auto"``: reverse-over-reverse on CPU, forward-over-reverse
                      on CUDA
``goldisk+G``         the same with ``gauss_newton=True`` (H and G)
``goldisk-sparse``    goldisk with ``make_projection("sparse", ...)`` (another subspace)
``goldisk-fastfood``  goldisk with ``make_projection("fastfood", ...)`` (another subspace)
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
    python benchmarks/bench_hessian.py --quick    # about 10 minutes on 2 CPU cores
    python benchmarks/bench_hessian.py --device cuda
    python benchmarks/bench_hessian.py --check-allocations   # only the allocation audit

Results: a table on stdout and ``benchmarks/results/bench_hessian_<device>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

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

from goldisk._flat import ParamLayout, parameter_vector  # noqa: E402
from goldisk.curvature import per_sample_loss, subspace_hessian  # noqa: E402
from goldisk.curvature._hessian import batches  # noqa: E402
from goldisk.models import MLP, init_weights_  # noqa: E402
from goldisk.projections import make_projection  # noqa: E402

DIMS = (10, 50, 100, 200)
QUICK_DIMS = (10, 100)
PEERS = ("autograd", "autograd-vec", "hvp-loop", "pyhessian", "curvlinops")
GOLDISK = ("goldisk", "goldisk+G", "goldisk-sparse", "goldisk-fastfood")
VARIANTS = ("goldisk-forward", "goldisk-chunk=d", "rr-vmap")
GRADIENT = "gradient"  # pseudo-method: one full-batch gradient (the unit of cost)
GRAD_REPEATS = 5
PROJECTION_OF = {"goldisk-sparse": "sparse", "goldisk-fastfood": "fastfood"}


# ====================================================================== workload
def make_workload(n=1000, in_features=784, hidden=(200, 200), classes=10, seed=0,
                  dtype=torch.float64, device="cpu"):
    """``(net, X, y)``: the seeded MLP (Xavier init, biases) and random data."""
    net = init_weights_(MLP(in_features, hidden, classes), "xavier", generator=seed)
    net = net.to(device=device, dtype=dtype).eval()
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, in_features, generator=g, dtype=dtype).to(device)
    y = torch.randint(0, classes, (n,), generator=g).to(device)
    return net, X, y


def n_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def make_P(kind, D, d, seed=0, dtype=torch.float64, device="cpu"):
    return make_projection(kind, D, d, random_state=seed, dtype=dtype, device=device)


#: directions whose parameter-space vectors are held at once (P^T is applied per block)
BLOCK = 16


def _direction_blocks(P):
    """Yield ``(start, V)``: ``V`` = ``(P e_i)`` for ``i`` in a block of <= BLOCK, (k, D).

    A dense P gives its columns (no arithmetic); other projections apply ``P`` to rows of
    the identity, one block at a time, so no D x d matrix is formed.
    """
    for s in range(0, P.d, BLOCK):
        k = min(BLOCK, P.d - s)
        if P.kind == "dense":
            yield s, P.weight[:, s : s + k].T
        else:
            E = torch.zeros(k, P.d, dtype=P.dtype, device=P.device)
            E[torch.arange(k), torch.arange(s, s + k)] = 1
            yield s, P(E)


def _mean_ce(net, X, y):
    return torch.nn.functional.cross_entropy(net(X), y)


def gradient_time(net, X, y, repeats=5, device="cpu"):
    """Median time of one full-batch gradient of the mean loss (the cost unit)."""
    params = [p for p in net.parameters() if p.requires_grad]

    def g():
        return torch.autograd.grad(_mean_ce(net, X, y), params)

    for _ in range(2):
        g()
    return median([timed(g, device)[1] for _ in range(repeats)])


# ====================================================================== methods
def h_goldisk(net, X, y, P, *, batch_size, chunk_size=None, gauss_newton=False,
              method="auto"):
    res = subspace_hessian(net, X, y, P, batch_size=batch_size, chunk_size=chunk_size,
                           gauss_newton=gauss_newton, dtype=X.dtype, method=method)
    return res.H, res.G


def h_autograd(net, X, y, P, *, vectorize=False, **_):
    """``torch.autograd.functional.hessian`` of ``theta -> mean loss(w0 + P theta)``."""
    layout = ParamLayout(net)
    w0 = parameter_vector(net).detach()

    def f(theta):
        z = layout.call(net, w0 + P(theta), X)
        return per_sample_loss(z, y).mean()

    theta0 = torch.zeros(P.d, dtype=X.dtype, device=X.device)
    return torch.autograd.functional.hessian(f, theta0, vectorize=vectorize), None


def h_hvp_loop(net, X, y, P, *, batch_size, **_):
    """PyHessian-style: per direction one double-backward HVP in parameter space.

    One gradient with ``create_graph=True`` per mini-batch, then for each of the ``d``
    directions ``v = P e_i`` the HVP ``grad(g, w, grad_outputs=v, retain_graph=True)``;
    ``P^T`` is applied to blocks of ``BLOCK`` HVPs (one matrix product per block instead
    of d matrix-vector products), so no D x d matrix is formed.
    """
    params = [p for p in net.parameters() if p.requires_grad]
    n, d = len(X), P.d
    H = torch.zeros(d, d, dtype=X.dtype, device=X.device)
    for xb, yb in batches(X, y, batch_size, X.dtype, X.device):
        loss = torch.nn.functional.cross_entropy(net(xb), yb, reduction="sum") / n
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params,
                                                                  create_graph=True)])
        for s, V in _direction_blocks(P):
            HV = torch.empty_like(V)
            for j, v in enumerate(V):
                last = s + j == d - 1
                hv = torch.autograd.grad(g, params, grad_outputs=v, retain_graph=not last)
                torch.cat([t.reshape(-1) for t in hv], out=HV[j])
            H[s : s + len(V)] += P.transpose(HV)
    return 0.5 * (H + H.T), None


def h_rr_vmap(net, X, y, P, *, batch_size, chunk_size=None, **_):
    """Reverse-over-reverse, vectorized: the hvp-loop with ``is_grads_batched=True``.

    One gradient with ``create_graph=True`` per mini-batch (the primal forward and
    backward are done once, whatever the number of chunks), then one vmapped double
    backward per block of ``chunk_size`` directions (default BLOCK), then ``P^T``.
    """
    params = [p for p in net.parameters() if p.requires_grad]
    n, d = len(X), P.d
    H = torch.zeros(d, d, dtype=X.dtype, device=X.device)
    global BLOCK
    old, BLOCK = BLOCK, chunk_size or BLOCK
    try:
        for xb, yb in batches(X, y, batch_size, X.dtype, X.device):
            loss = torch.nn.functional.cross_entropy(net(xb), yb, reduction="sum") / n
            g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params,
                                                                      create_graph=True)])
            for s, V in _direction_blocks(P):
                hv = torch.autograd.grad(g, params, grad_outputs=V, retain_graph=True,
                                         is_grads_batched=True)
                HV = torch.cat([t.reshape(len(V), -1) for t in hv], dim=1)
                H[s : s + len(V)] += P.transpose(HV)
    finally:
        BLOCK = old
    return 0.5 * (H + H.T), None


def h_pyhessian(net, X, y, P, **_):
    """PyHessian 0.1: its ``hessian`` class (one batch) and ``hessian_vector_product``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyhessian import hessian as PyHessian
        from pyhessian.utils import hessian_vector_product

    layout = ParamLayout(net)
    crit = torch.nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_graph=True reference-cycle warning
        hc = PyHessian(net, crit, data=(X, y), cuda=X.is_cuda)
    H = torch.zeros(P.d, P.d, dtype=X.dtype, device=X.device)
    for s, V in _direction_blocks(P):
        HV = torch.empty_like(V)
        for j, v in enumerate(V):
            hv = hessian_vector_product(hc.gradsH, hc.params, list(layout.unflatten(v).values()))
            torch.cat([t.reshape(-1) for t in hv], out=HV[j])
        H[s : s + len(V)] = P.transpose(HV)
    for p in net.parameters():  # break the create_graph reference cycle
        p.grad = None
    del hc
    return 0.5 * (H + H.T), None


def h_curvlinops(net, X, y, P, *, batch_size, **_):
    """curvlinops 3: ``HessianLinearOperator(...) @ P`` (all d columns at once), then P^T."""
    from curvlinops import HessianLinearOperator

    params = [p for p in net.parameters() if p.requires_grad]
    data = list(zip(X.split(batch_size), y.split(batch_size), strict=True))
    op = HessianLinearOperator(net, torch.nn.CrossEntropyLoss(), params, data,
                               check_deterministic=False, num_data=len(X))
    Pd = P.weight if P.kind == "dense" else P.to_dense()  # D x d, the operator's input
    HP = op @ Pd
    H = P.transpose(HP.T).T
    return 0.5 * (H + H.T), None


METHODS = {
    "goldisk": (h_goldisk, {}),
    "goldisk+G": (h_goldisk, {"gauss_newton": True}),
    "goldisk-forward": (h_goldisk, {"method": "forward"}),
    "goldisk-sparse": (h_goldisk, {}),
    "goldisk-fastfood": (h_goldisk, {}),
    "autograd": (h_autograd, {}),
    "autograd-vec": (h_autograd, {"vectorize": True}),
    "hvp-loop": (h_hvp_loop, {}),
    "pyhessian": (h_pyhessian, {}),
    "curvlinops": (h_curvlinops, {}),
    "goldisk-chunk=d": (h_goldisk, {"chunk": "d"}),
    "rr-vmap": (h_rr_vmap, {}),
}
REQUIRES = {"pyhessian": "pyhessian", "curvlinops": "curvlinops"}


def available(method) -> bool:
    mod = REQUIRES.get(method)
    return mod is None or importlib.util.find_spec(mod) is not None


def compute_hessian(method, net, X, y, P, *, batch_size=None, chunk_size=None):
    """The d x d subspace Hessian ``P^T H P`` (and G or None) by ``method``."""
    fn, kw = METHODS[method]
    kw = dict(kw)
    if kw.pop("chunk", None) == "d":
        chunk_size = P.d  # all directions in one vectorized pass
    if fn in (h_goldisk, h_rr_vmap):
        kw["chunk_size"] = chunk_size
    return fn(net, X, y, P, batch_size=batch_size or len(X), **kw)


def projection_kind(method) -> str:
    return PROJECTION_OF.get(method, "dense")


def _auto_chunk(model, layout, w, xb, n_dirs, budget_bytes=2**30):
    """goldisk's CPU rule (copied): directions per chunk so tangents fit ``budget_bytes``."""
    sizes = []
    hooks = [m.register_forward_hook(
        lambda _m, _i, o: sizes.append(o.numel() if torch.is_tensor(o) else 0))
        for m in model.modules()]
    try:
        with torch.no_grad():
            layout.call(model, w, xb[:1])
    finally:
        for h in hooks:
            h.remove()
    item = w.element_size()
    per_dir = 6 * max(sum(sizes), 1) * len(xb) * item + 4 * w.numel() * item
    return int(max(1, min(n_dirs, budget_bytes // per_dir)))


# ====================================================================== allocation audit
class AllocationRecorder(TorchDispatchMode):
    """Records the largest tensor *allocated* by any aten op while it is active.

    A dispatch mode sits below autograd and the ``torch.func`` transforms, so it sees the
    physical (batched) tensors that the kernels write, e.g. a vmapped ``(chunk, D)``
    tangent. Outputs that share storage with an input (views: ``expand``, ``reshape``...)
    are not allocations and are ignored. Sizes are counted in elements of the working
    dtype (``nbytes // itemsize``), so raw byte storages (``deepcopy``) count correctly.
    """

    def __init__(self, itemsize=8):
        super().__init__()
        self.itemsize = itemsize
        self.largest = (0, None, None)  # (elements, op, shape)
        self.n_ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.n_ops += 1
        inputs = {_storage(t) for t in torch.utils._pytree.tree_leaves((args, kwargs))}
        for t in torch.utils._pytree.tree_leaves(out):
            ptr = _storage(t)
            if ptr is None or ptr in inputs:
                continue
            n = t.untyped_storage().nbytes() // self.itemsize
            if n > self.largest[0]:
                self.largest = (n, str(func), tuple(t.shape))
        return out


def _storage(t):
    """Data pointer of a strided tensor's storage (None for anything else)."""
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
        return None
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None


def check_allocations(kinds=("dense", "sparse", "fastfood"), dims=(10, 50), n=64,
                      chunks=(None, "half"), method="goldisk", device="cpu"):
    """Run ``method`` at the real D (n samples) and record its largest allocation.

    Limit: ``D*D`` elements for a dense P (which is itself D x d), ``D*d`` for sparse and
    Fastfood (which never store a D x d matrix). ``chunks``: goldisk's ``chunk_size``,
    ``None`` for its automatic choice, ``"half"`` for ``ceil(d/2)``. One dict per case.
    """
    net, X, y = make_workload(n=n, device=device)
    D = n_params(net)
    out = []
    for kind in kinds:
        for d in dims:
            P = make_P(kind, D, d, device=device)
            limit = D * D if kind == "dense" else D * d
            for chunk in chunks:
                if chunk == "half":
                    chunk = -(-d // 2)
                rec = AllocationRecorder()
                with rec:
                    compute_hessian(method, net, X, y, P, batch_size=n, chunk_size=chunk)
                numel, op, shape = rec.largest
                out.append({
                    "method": method, "projection": kind, "D": D, "d": d, "n": n,
                    "chunk_size": "auto" if chunk is None else chunk,
                    "largest_numel": numel, "largest_op": op, "largest_shape": list(shape),
                    "limit": limit, "limit_name": "D*D" if kind == "dense" else "D*d",
                    "ok": numel < limit, "ops": rec.n_ops,
                })
    return out


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
    methods = [m for m in (args.methods or (*GOLDISK, *PEERS,
                                            *(VARIANTS if args.variants else ())))]
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
