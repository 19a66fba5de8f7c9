"""The full-space Hessian or Gauss-Newton matrix as a matrix-free operator over a dataset.

Products go through the reverse-over-reverse engine of ``goldisk.curvature._reverse``: per
mini-batch the gradient ``g = J^T r`` is built once with its graph (``gradient_graph``) and
each direction is one double backward through it (``hessian_block``), which also yields
``J v`` for the Gauss-Newton product ``G v = J^T A J v`` (one more vector-Jacobian product).

Iterative methods (Lanczos, Hutch++, XTrace, SLQ) call the operator many times at the same
point, so the mini-batch graphs are built once and kept while they fit a memory budget
(``GRAPH_BUDGET_BYTES`` on CPU, a quarter of the free memory on a GPU): a product then
costs the double backward alone, not also a forward and a backward per batch. Beyond the
budget each product rebuilds the graphs batch by batch (memory bounded by ``batch_size``).
"""

from __future__ import annotations

import torch
from torch import nn

from .._flat import ParamLayout, parameter_vector
from .._validation import TRANSFORMS_LOCK, check_positive_int, second_order
from ._losses import logit_hessian
from ._prepare import batches, curvature_inputs
from ._reverse import LOOP_MAX, batched_flat, gradient_graph, hessian_block, output_sizes

__all__ = ["CurvatureOperator", "OPERATORS", "GRAPH_BUDGET_BYTES", "parameter_groups"]

OPERATORS = ("hessian", "ggn")

#: Retained gradient graphs of all mini-batches are kept on CPU up to this many bytes.
GRAPH_BUDGET_BYTES = 2 * 2**30


def parameter_groups(layout: ParamLayout) -> dict[str, list[str]]:
    """Parameter names grouped by the module that owns them (``"0.weight"``, ``"0.bias"``
    -> ``"0"``): the "layers" of per-layer results."""
    groups: dict[str, list[str]] = {}
    for name in layout.names:
        groups.setdefault(name.rsplit(".", 1)[0] if "." in name else name, []).append(name)
    return groups


def _select(layout: ParamLayout, parameters) -> torch.Tensor | None:
    """Flat indices of the parameters named (or under the module prefixes named) in
    ``parameters``; ``None`` for all."""
    if parameters is None:
        return None
    if isinstance(parameters, str):
        parameters = [parameters]
    try:
        wanted = list(parameters)
    except TypeError:
        raise TypeError(f"parameters must be None, a name or a list of names, got "
                        f"{type(parameters).__name__}.") from None
    idx, unknown = [], []
    for want in wanted:
        hits = [sl for name, sl in layout.slices()
                if name == want or name.startswith(str(want) + ".")]
        if not hits:
            unknown.append(want)
        idx += [torch.arange(sl.start, sl.stop) for sl in hits]
    if unknown or not idx:
        raise ValueError(f"parameters {unknown or wanted!r} match no trainable parameter; "
                         f"choose among {layout.names} (or their module prefixes).")
    return torch.unique(torch.cat(idx))


class CurvatureOperator:
    """``v -> H v`` (``operator="hessian"``) or ``v -> G v`` (``"ggn"``) for the mean loss.

    ``matmat(V)`` takes a block ``(c, D)`` of directions and returns ``(c, D)``; every
    product is over all of ``(X, y)`` and counts once in ``n_matvecs``. ``parameters``
    restricts the operator to the diagonal block of some parameters (per-layer results):
    ``D`` is then their count.
    """

    def __init__(self, model: nn.Module, X, y, *, operator="hessian", loss="cross_entropy",
                 batch_size=512, dtype=torch.float64, device=None, parameters=None):
        if operator not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}.")
        self.operator = operator
        self.loss = loss
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.net, X, y, self._integer, self.dtype, self.device = curvature_inputs(
            model, X, y, loss, dtype, device)
        self.layout = ParamLayout(self.net)
        self.w0 = parameter_vector(self.net).to(self.device, self.dtype)
        self.X, self.y, self.n = X, y, len(X)
        self.index = _select(self.layout, parameters)
        if self.index is not None:
            self.index = self.index.to(self.device)
        self.D = self.layout.D if self.index is None else len(self.index)
        self.n_matvecs = 0
        self._graphs = None if not self._fits() else []

    def _fits(self) -> bool:
        xb, _ = next(batches(self.X, self.y, self.batch_size, self.dtype, self.device,
                             self._integer))
        per_sample = sum(output_sizes(self.net, self.layout, self.w0, xb))
        # the graph of g = J^T r holds about three times the activations, plus the
        # parameters' gradients
        need = (4 * per_sample * self.n + 3 * self.layout.D * -(-self.n // self.batch_size)) \
            * self.w0.element_size()
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return need <= free // 4
        return need <= GRAPH_BUDGET_BYTES

    def _batches(self):
        """``(params, z, r, g, A)`` per mini-batch: kept when they fit, else rebuilt."""
        if self._graphs:
            yield from self._graphs
            return
        keep = self._graphs is not None
        for xb, yb in batches(self.X, self.y, self.batch_size, self.dtype, self.device,
                              self._integer):
            params, z, r, g, _ = gradient_graph(self.net, self.layout, self.w0, xb, yb,
                                                self.loss, self.n)
            A = logit_hessian(z.detach(), yb, self.loss) / self.n if self.operator == "ggn" \
                else None
            item = (params, z, r, g, A)
            if keep:
                self._graphs.append(item)
            yield item

    def _embed(self, V):
        if self.index is None:
            return V
        full = torch.zeros(len(V), self.layout.D, dtype=V.dtype, device=V.device)
        full[:, self.index] = V
        return full

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``M V^T`` as rows: ``(c, D) -> (c, D)``, over the whole dataset."""
        V = torch.as_tensor(V, dtype=self.dtype, device=self.device)
        single = V.dim() == 1
        V = self._embed(V.reshape(-1, self.D))
        out = torch.zeros_like(V)
        with TRANSFORMS_LOCK, second_order():
            for params, z, r, g, A in self._batches():
                if self.operator == "hessian":
                    out += hessian_block(self.layout, params, r, g, V, jv=False)[0]
                else:
                    out += self._ggn_block(params, z, r, g, A, V)
        self.n_matvecs += len(V)
        if self.index is not None:
            out = out[:, self.index]
        return out[0] if single else out

    def _ggn_block(self, params, z, r, g, A, V):
        """``G V^T`` for one batch: ``J v`` by a double backward to ``r`` only, then
        ``J^T (A J v)`` by a vector-Jacobian product through the retained forward."""
        opts = dict(retain_graph=True, allow_unused=True, materialize_grads=True)
        loop = len(V) == 1 or (V.device.type == "cpu" and len(V) <= LOOP_MAX)
        if loop:
            rows = []
            for v in V:
                (jv,) = torch.autograd.grad(g, [r], grad_outputs=list(
                    self.layout.unflatten(v).values()), **opts)
                ajv = torch.einsum("bce,be->bc", A, jv)
                gv = torch.autograd.grad(z, params, grad_outputs=ajv, **opts)
                rows.append(torch.cat([t.reshape(-1) for t in gv]))
            return torch.stack(rows)
        vs = list(self.layout.unflatten(V).values())
        (jv,) = torch.autograd.grad(g, [r], grad_outputs=vs, is_grads_batched=True, **opts)
        ajv = torch.einsum("bce,pbe->pbc", A, jv)
        gv = torch.autograd.grad(z, params, grad_outputs=ajv, is_grads_batched=True, **opts)
        return batched_flat(gv, params, len(V))

    def dense(self) -> torch.Tensor:
        """The explicit ``D x D`` matrix (``D`` products; small models and tests only)."""
        eye = torch.eye(self.D, dtype=self.dtype, device=self.device)
        M = torch.cat([self.matmat(eye[s:s + 256]) for s in range(0, self.D, 256)])
        return 0.5 * (M + M.T)
