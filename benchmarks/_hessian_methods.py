"""The methods of ``bench_hessian.py``: the workload, goldisk and every peer computing the
subspace Hessian ``P^T H P``, and the allocation audit (no ``D x d`` array). Imported by
the benchmark's driver and by ``tests/test_benchmarks_smoke.py``; see ``bench_hessian.py``
for what each method is.
"""

from __future__ import annotations

import importlib.util
import warnings

import torch
from _common import median, timed
from torch.utils._python_dispatch import TorchDispatchMode

from goldisk._flat import ParamLayout, parameter_vector
from goldisk.curvature import per_sample_loss, subspace_gauss_newton, subspace_hessian
from goldisk.curvature._hessian import batches
from goldisk.models import MLP, init_weights_
from goldisk.projections import make_projection

DIMS = (10, 50, 100, 200)
QUICK_DIMS = (10, 100)
PEERS = ("autograd", "autograd-vec", "hvp-loop", "pyhessian", "curvlinops")
GOLDISK = ("goldisk", "goldisk+G", "goldisk-sparse", "goldisk-fastfood")
#: the contraction engine against the reverse engine it replaces, and G alone
CONTRACT = ("goldisk-reverse", "goldisk-G", "curvlinops-ggn")
VARIANTS = ("goldisk-forward", "goldisk-chunk=d", "rr-vmap")
GRADIENT = "gradient"  # pseudo-method: one full-batch gradient (the unit of cost)
GRAD_REPEATS = 5
PROJECTION_OF = {"goldisk-sparse": "sparse", "goldisk-fastfood": "fastfood",
                 "goldisk-sparse-reverse": "sparse"}


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


def g_goldisk(net, X, y, P, *, batch_size, **_):
    """``subspace_gauss_newton``: G alone (the contraction engine: forward tangents only)."""
    res = subspace_gauss_newton(net, X, y, P, batch_size=batch_size, dtype=X.dtype)
    return None, res.G


def g_curvlinops(net, X, y, P, *, batch_size, **_):
    """curvlinops 3: ``GGNLinearOperator(...) @ P`` (all d columns at once), then P^T."""
    from curvlinops import GGNLinearOperator

    params = [p for p in net.parameters() if p.requires_grad]
    data = list(zip(X.split(batch_size), y.split(batch_size), strict=True))
    op = GGNLinearOperator(net, torch.nn.CrossEntropyLoss(), params, data,
                           check_deterministic=False, num_data=len(X))
    Pd = P.weight if P.kind == "dense" else P.to_dense()
    G = P.transpose((op @ Pd).T).T
    return None, 0.5 * (G + G.T)


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
    "goldisk-reverse": (h_goldisk, {"method": "reverse"}),
    "goldisk-sparse-reverse": (h_goldisk, {"method": "reverse"}),
    "goldisk-G": (g_goldisk, {}),
    "curvlinops-ggn": (g_curvlinops, {}),
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
REQUIRES = {"pyhessian": "pyhessian", "curvlinops": "curvlinops",
            "curvlinops-ggn": "curvlinops"}


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
