"""The default learning rate of the goldisk nets (``lr=None``; ``lr="auto"`` is the rate
:func:`goldisk.curvature.suggest_lr` measures instead): 1e-3 in the full space,
a rule from the projection's geometry inside a subspace (issue 16; the measurements behind
the constants are in ``docs/user_guide.md``, "Learning rate inside a subspace", made by
``benchmarks/study_subspace_lr.py``)."""

from __future__ import annotations

import math

import torch

from .._subspace import SubspaceModule

__all__ = ["FULL_SPACE_LR", "subspace_lr"]

#: Adam's default step, kept for full-space training (any optimizer).
FULL_SPACE_LR = 1e-3
#: Adaptive optimizers: lr = max(FULL_SPACE_LR, ADAPTIVE_C / ||P||_F^2), times the radius
#: ratio above 1.
ADAPTIVE_C = 30.0
#: Plain SGD (and any non-adaptive optimizer): lr = SGD_C / max(1, radius).
SGD_C = 10.0
_ADAPTIVE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
             torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad,
             torch.optim.Adadelta)
_EXACT_NORMS = 50_000_000  # D * d up to which ||P||_F is computed, not taken as d


def frobenius2(projection) -> float:
    """``||P||_F^2`` (the sum of the squared column norms; ``d`` for goldisk's projections,
    whose columns have unit norm), computed exactly for ``D * d <= 5e7``."""
    D, d = int(projection.D), int(projection.d)
    if D * d > _EXACT_NORMS:
        return float(d)
    with torch.no_grad():
        return float(projection.column_norms().double().pow(2).sum())


def subspace_lr(optimizer, module, radius: float = 1.0) -> float:
    """The learning rate the default ``lr=None`` stands for, given the optimizer and module.

    Full space (``module`` not a :class:`goldisk.SubspaceModule`): ``1e-3``. In a subspace
    ``w = w0 + P theta`` with ``d_eff = ||P||_F^2`` (``= d`` for goldisk's unit-norm
    columns), for Adam and the other adaptive optimizers
    ``lr = max(1e-3, 30 / d_eff) * max(1, radius)``. Adam moves every coordinate of
    ``theta`` by about ``lr`` per step, so ``w`` by about ``lr * sqrt(d_eff)``: the
    measured best ``lr`` falls as ``1 / d`` (0.3 at d = 100, 0.03 at d = 1000, on digits
    (D = 17,610) and on mnist5k (D = 89,610) alike, so not with ``D``), never below the
    full-space default, and grows with the init radius ``radius`` (units of the reference
    radius) above 1, as Adam's steps do not grow with the weights. Plain SGD (and any
    other optimizer): ``lr = 10 / max(1, radius)``, the largest stable step of the
    measured grid at d = 100 and 1,000 alike (the slice's gradient ``P^T g`` and its
    curvature ``P^T H P`` shrink together with ``d / D``); larger radii have larger
    gradients and need a smaller step. The measurements are in ``docs/user_guide.md``
    ("Learning rate inside a subspace").

    Examples
    --------
    >>> import torch
    >>> from goldisk import SubspaceModule
    >>> from goldisk.models import MLP
    >>> net = MLP(64, (100, 100), 10)  # D = 17,610
    >>> from goldisk.projections import make_projection
    >>> sub = SubspaceModule(net, make_projection("sparse", 17610, 1000, random_state=0))
    >>> round(subspace_lr(torch.optim.Adam, sub), 6), subspace_lr(torch.optim.Adam, net)
    (0.03, 0.001)
    """
    if not isinstance(module, SubspaceModule):
        return FULL_SPACE_LR
    P = module.projection
    d_eff = frobenius2(P)
    if not (d_eff > 0 and math.isfinite(d_eff)):
        raise ValueError(f"the subspace's projection has ||P||_F^2 = {d_eff}; pass lr= "
                         "explicitly or a projection with nonzero finite columns.")
    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    if issubclass(cls, _ADAPTIVE):
        return max(FULL_SPACE_LR, ADAPTIVE_C / d_eff) * max(1.0, float(radius))
    return SGD_C / max(1.0, float(radius))
