"""Statistics of a network at initialization that are claimed to predict its trainability.

The zero-cost proxies of neural architecture search (Abdelfattah et al. 2021, "Zero-cost
proxies for lightweight NAS", ICLR: ``grad_norm``, ``snip``, ``grasp``, ``synflow``,
``jacob_cov``), the NTK condition number of TE-NAS (Chen et al. 2021), and the curvature
statistics of the Goldilocks zone (Fort & Scherlis 2019; Vysogorets et al. 2024). Each is
a small function of ``(model, X, y)`` computed in float64 on a private copy of the model
in eval mode (the caller's module is untouched); :func:`init_statistics` computes any set
of them, and ``INIT_STATISTICS`` says for each which direction is claimed to be better.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .._validation import check_data, check_float_dtype, check_model
from ._losses import per_sample_loss

__all__ = [
    "INIT_STATISTICS",
    "gradient_norm",
    "snip",
    "grasp",
    "synflow",
    "jacob_cov",
    "ntk_condition_number",
    "curvature_statistics",
    "lambda_max",
    "init_statistics",
]

#: statistic -> +1 if a larger value is claimed to train better, -1 if a smaller one.
INIT_STATISTICS = {
    "grad_norm": 1,       # Abdelfattah et al. 2021
    "snip": 1,            # Lee et al. 2019, as a proxy by Abdelfattah et al. 2021
    "grasp": 1,           # Wang et al. 2020, as a proxy by Abdelfattah et al. 2021
    "synflow": 1,         # Tanaka et al. 2020, as a proxy by Abdelfattah et al. 2021
    "jacob_cov": 1,       # Mellor et al. 2021
    "ntk_cond": -1,       # Chen et al. 2021 (TE-NAS): a well-conditioned NTK trains faster
    "trace_ratio": 1,     # Fort & Scherlis 2019
    "frac_positive": 1,   # Fort & Scherlis 2019
    "g_trace_ratio": 1,   # Vysogorets et al. 2024: the zone is the Gauss-Newton term's
    "g_dominance": 1,     # g_trace / |h_trace|
    "loss": -1,           # Fort & Scherlis 2019 (selection by initial loss)
    "lambda_max": -1,     # Cohen et al. 2021, Gilmer et al. 2021: sharp inits need small lr
}

_CURVATURE = ("trace_ratio", "frac_positive", "g_trace_ratio", "g_dominance", "loss")


def _setup(model, X, y=None, dtype=torch.float64, need_y=True):
    """A float64 eval-mode copy of ``model`` and ``(X, y)`` as tensors (y: long or float)."""
    check_model(model)
    dtype = check_float_dtype(dtype)
    if need_y:
        X, y = check_data(X, y)
    else:
        X, _ = check_data(X, np.zeros(len(X)))
    net = copy.deepcopy(model).to(dtype=dtype).eval()
    device = next(net.parameters()).device
    X = torch.as_tensor(X).to(device=device, dtype=dtype)
    if need_y:
        y = torch.as_tensor(y).to(device)
        y = y.to(dtype) if y.is_floating_point() else y.long()
    return net, X, y


def _params(net) -> list[torch.Tensor]:
    return [p for p in net.parameters() if p.requires_grad]


def _loss(net, X, y, loss):
    return per_sample_loss(net(X), y, loss).mean()


def _gradient(net, X, y, loss, create_graph=False) -> list[torch.Tensor]:
    return list(torch.autograd.grad(_loss(net, X, y, loss), _params(net),
                                    create_graph=create_graph, allow_unused=True,
                                    materialize_grads=True))


def gradient_norm(model: nn.Module, X, y, *, loss="cross_entropy",
                  dtype=torch.float64) -> float:
    """``||grad_w L(w)||_2``, the Euclidean norm of the gradient of the mean loss.

    ``grad_norm`` of Abdelfattah et al. 2021 ("Zero-cost proxies for lightweight NAS"),
    here the norm of the whole gradient vector (their code sums per-layer norms).

    Examples
    --------
    >>> net = torch.nn.Linear(2, 2, bias=False)
    >>> _ = torch.nn.init.zeros_(net.weight)   # p = (1/2, 1/2): grad = (p - e_y) x^T
    >>> round(gradient_norm(net, torch.tensor([[1.0, 0.0]]), torch.tensor([0])), 6)
    0.707107
    """
    net, X, y = _setup(model, X, y, dtype)
    g = _gradient(net, X, y, loss)
    return float(torch.sqrt(sum((gi ** 2).sum() for gi in g)))


def snip(model: nn.Module, X, y, *, loss="cross_entropy", dtype=torch.float64) -> float:
    """``sum |w * grad_w L|``: SNIP's connection sensitivity summed over all parameters.

    Lee et al. 2019 ("SNIP: single-shot network pruning"), as the zero-cost proxy of
    Abdelfattah et al. 2021.
    """
    net, X, y = _setup(model, X, y, dtype)
    g = _gradient(net, X, y, loss)
    return float(sum((p.detach() * gi).abs().sum() for p, gi in zip(_params(net), g,
                                                                     strict=True)))


def grasp(model: nn.Module, X, y, *, loss="cross_entropy", dtype=torch.float64) -> float:
    """``-w^T H g``: GraSP's gradient-signal preservation, with ``g`` the gradient and
    ``H`` the Hessian of the mean loss (one Hessian-vector product).

    Wang et al. 2020 ("Picking winning tickets before training by preserving gradient
    flow"), summed over all parameters as the zero-cost proxy of Abdelfattah et al. 2021.
    """
    net, X, y = _setup(model, X, y, dtype)
    params = _params(net)
    g = _gradient(net, X, y, loss, create_graph=True)
    gd = [gi.detach() for gi in g]
    hg = torch.autograd.grad(sum((gi * c).sum() for gi, c in zip(g, gd, strict=True)),
                             params, allow_unused=True, materialize_grads=True)
    return float(-sum((p.detach() * h).sum() for p, h in zip(params, hg, strict=True)))


def synflow(model: nn.Module, X, y=None, *, dtype=torch.float64) -> float:
    """``sum w * dR/dw`` with ``R = 1^T f_|w|(1)``: the synaptic flow of the network with
    every parameter replaced by its absolute value, on an all-ones input of one sample's
    shape (Tanaka et al. 2020; the zero-cost proxy of Abdelfattah et al. 2021, here over
    all parameters, biases included). Data-free: only the shape of ``X`` is used.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False),
    ...                           torch.nn.Linear(2, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
    ...     _ = net[1].weight.copy_(torch.tensor([[-1.0, 3.0]]))
    >>> synflow(net, torch.zeros(1, 2))   # 2 layers: 2 * R, R = 1*(1+2) + 3*(0.5+0) = 4.5
    9.0
    """
    net, X, _ = _setup(model, X, None, dtype, need_y=False)
    params = _params(net)
    with torch.no_grad():
        for p in params:
            p.abs_()
    R = net(torch.ones_like(X[:1])).sum()
    g = torch.autograd.grad(R, params, allow_unused=True, materialize_grads=True)
    return float(sum((p.detach() * gi).sum() for p, gi in zip(params, g, strict=True)))


def _input_jacobian(net, X) -> torch.Tensor:
    """``d (sum_c f_c(x_n)) / d x_n`` for each sample, flattened (N, input size)."""
    X = X.clone().requires_grad_(True)
    (J,) = torch.autograd.grad(net(X).sum(), X)  # samples are independent in eval mode
    return J.reshape(len(X), -1)


def jacob_cov(model: nn.Module, X, y=None, *, k: float = 1e-5, dtype=torch.float64) -> float:
    """``-sum_i [log(v_i + k) + 1/(v_i + k)]`` over the eigenvalues ``v`` of the correlation
    matrix of the per-sample input Jacobians ``d (sum_c f_c(x_n)) / d x_n`` on the batch ``X``.

    Mellor et al. 2021 ("Neural architecture search without training", v1), as the
    ``jacob_cov`` proxy of Abdelfattah et al. 2021 (same ``k = 1e-5``). Higher: the
    Jacobians of different inputs are less correlated. Labels are not used.
    """
    net, X, _ = _setup(model, X, None, dtype, need_y=False)
    if len(X) < 2:
        raise ValueError(f"jacob_cov needs a batch of at least 2 samples, got {len(X)}.")
    J = _input_jacobian(net, X).detach().cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(J)
    if not np.all(np.isfinite(corr)):
        return float("nan")  # a constant Jacobian row (e.g. a dead network)
    v = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def ntk_condition_number(model: nn.Module, X, y=None, *, dtype=torch.float64) -> float:
    """``lambda_max / lambda_min`` of the empirical NTK ``Theta = J J^T`` on the batch ``X``,
    where row ``n`` of ``J`` is ``d (sum_c f_c(x_n)) / d w``.

    The trainability measure of TE-NAS (Chen, Gong & Wang 2021, "Neural architecture search
    on ImageNet in four GPU hours"), defined as in their code (gradient of the summed logits
    per sample). Lower is claimed better; ``inf`` when ``Theta`` is singular (e.g. a batch
    larger than the number of parameters). Labels are not used.
    """
    net, X, _ = _setup(model, X, None, dtype, need_y=False)
    params = _params(net)
    rows = []
    for n in range(len(X)):
        g = torch.autograd.grad(net(X[n : n + 1]).sum(), params, allow_unused=True,
                                materialize_grads=True)
        rows.append(torch.cat([gi.reshape(-1) for gi in g]))
    J = torch.stack(rows)
    eig = torch.linalg.eigvalsh(J @ J.T)
    lo, hi = float(eig[0]), float(eig[-1])
    tol = len(eig) * torch.finfo(eig.dtype).eps * abs(hi)
    return hi / lo if lo > tol else float("inf")


def curvature_statistics(model: nn.Module, X, y, *, dim: int = 20, loss="cross_entropy",
                         batch_size: int = 512, random_state=None,
                         dtype=torch.float64) -> dict[str, float]:
    """Goldilocks-zone statistics on one random ``dim``-dimensional hyperplane (exact
    Hessian by :func:`goldisk.subspace_hessian`): ``trace_ratio`` and ``frac_positive``
    (Fort & Scherlis 2019), ``g_trace_ratio`` and ``g_dominance`` (``g_trace / |h_trace|``,
    the Gauss-Newton split of Vysogorets et al. 2024), and the mean ``loss``.
    """
    from .._flat import ParamLayout
    from .._rng import draw_seed
    from ..projections import make_projection
    from ._hessian import subspace_hessian
    from ._stats import batch_statistics

    check_model(model)
    D = ParamLayout(model).D
    P = make_projection("dense", D, min(int(dim), D), random_state=draw_seed(random_state))
    res = subspace_hessian(model, X, y, P, loss=loss, batch_size=batch_size, dtype=dtype)
    h, g, t = (batch_statistics(M.reshape(1, *M.shape[-2:])) for M in (res.H, res.G, res.Hterm))
    h_trace = abs(float(t["trace"][0]))
    return {"trace_ratio": float(h["trace_ratio"][0]),
            "frac_positive": float(h["frac_positive"][0]),
            "g_trace_ratio": float(g["trace_ratio"][0]),
            "g_dominance": float(g["trace"][0]) / h_trace if h_trace > 0 else float("inf"),
            "loss": float(res.loss)}


def lambda_max(model: nn.Module, X, y, *, operator="hessian", loss="cross_entropy",
               batch_size: int = 512, random_state=None, dtype=torch.float64) -> float:
    """The largest eigenvalue of the full-space Hessian (or Gauss-Newton matrix) of the mean
    loss, by Lanczos (:func:`goldisk.curvature.top_eigenvalues`). Full-batch gradient
    descent is stable at the start only for ``lr < 2 / lambda_max`` (Cohen et al. 2021;
    Gilmer et al. 2021)."""
    from ._lanczos import top_eigenvalues

    return float(top_eigenvalues(model, X, y, k=1, operator=operator, loss=loss,
                                 batch_size=batch_size, random_state=random_state,
                                 dtype=dtype)[0])


def init_statistics(model: nn.Module, X, y, statistics=None, *, loss="cross_entropy",
                    n_batch: int = 64, dim: int = 20, batch_size: int = 512,
                    random_state=None, dtype=torch.float64) -> dict[str, float]:
    """Any of ``INIT_STATISTICS`` (default: all) of ``model`` on ``(X, y)``, as a dict.

    ``ntk_cond`` and ``jacob_cov`` are batch statistics: they use ``n_batch`` samples drawn
    with ``random_state`` (TE-NAS and Mellor et al. use one mini-batch); ``synflow`` is
    data-free; the others use all of ``(X, y)``. ``random_state`` also seeds the subspace
    of the curvature statistics and the Lanczos start of ``lambda_max``.

    Examples
    --------
    >>> from goldisk.models import MLP
    >>> g = torch.Generator().manual_seed(0)
    >>> X, y = torch.randn(30, 4, generator=g), torch.arange(30) % 3
    >>> s = init_statistics(MLP(4, (8,), 3), X, y, ["grad_norm", "ntk_cond"], n_batch=8,
    ...                     random_state=0)
    >>> sorted(s), s["ntk_cond"] >= 1
    (['grad_norm', 'ntk_cond'], True)
    """
    from .._rng import check_random_state

    names = list(INIT_STATISTICS) if statistics is None else list(statistics)
    bad = [s for s in names if s not in INIT_STATISTICS]
    if bad:
        raise ValueError(f"statistics must be a subset of {list(INIT_STATISTICS)}, got {bad}.")
    if isinstance(n_batch, bool) or not isinstance(n_batch, int | np.integer) or n_batch < 2:
        raise ValueError(f"n_batch must be an int >= 2, got {n_batch!r}.")
    X, y = check_data(X, y)
    rng = check_random_state(random_state)
    idx = np.sort(rng.choice(len(X), min(n_batch, len(X)), replace=False))
    Xb = X[torch.as_tensor(idx)] if torch.is_tensor(X) else X[idx]
    seed = int(rng.integers(0, 2**62))
    kw = {"dtype": dtype}
    out: dict[str, float] = {}
    if any(s in _CURVATURE for s in names):
        curv = curvature_statistics(model, X, y, dim=dim, loss=loss, batch_size=batch_size,
                                    random_state=seed, **kw)
        out.update({k: v for k, v in curv.items() if k in names})
    simple = {"grad_norm": lambda: gradient_norm(model, X, y, loss=loss, **kw),
              "snip": lambda: snip(model, X, y, loss=loss, **kw),
              "grasp": lambda: grasp(model, X, y, loss=loss, **kw),
              "synflow": lambda: synflow(model, X, **kw),
              "jacob_cov": lambda: jacob_cov(model, Xb, **kw),
              "ntk_cond": lambda: ntk_condition_number(model, Xb, **kw),
              "lambda_max": lambda: lambda_max(model, X, y, loss=loss, batch_size=batch_size,
                                               random_state=seed, **kw)}
    for name in names:
        if name in simple:
            out[name] = simple[name]()
    return {name: out[name] for name in names}
