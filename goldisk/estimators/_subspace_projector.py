"""``SubspaceProjector``: train a network inside a random hyperplane or hypersphere."""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator
from torch import nn

from .._flat import ParamLayout
from .._radius import REFERENCES, layer_reference_radii
from .._subspace import KINDS, SubspaceModule
from ..projections import KINDS as PROJECTIONS
from ..projections import as_projection, make_projection
from ._constraints import NO_VALIDATION, Dim, OneOf, validate_params
from ._init_scaler import not_a_step

__all__ = ["SubspaceProjector"]


def layer_metric(module: nn.Module, reference: str = "xavier") -> np.ndarray:
    """Per-coordinate scales ``eta`` (length D): within each Linear/Conv layer, the
    layer's reference radius divided by the square root of its weight count, i.e. the
    standard deviation of the reference init of that layer (Fort & Scherlis's per-layer
    normalization). Parameters outside such layers get ``r_ref / sqrt(#weights)``.
    """
    refs = layer_reference_radii(module, reference)
    mods = dict(module.named_modules())
    layout = ParamLayout(module)
    eta = {name: r / math.sqrt(mods[name].weight.numel()) for name, r in refs.items()}
    total_w = sum(mods[name].weight.numel() for name in refs)
    fallback = math.sqrt(sum(r * r for r in refs.values()) / total_w)
    out = np.empty(layout.D)
    for name, slc in layout.slices():
        out[slc] = eta.get(name.rpartition(".")[0], fallback)
    return out


class SubspaceProjector(BaseEstimator):
    """Restrict training to a random ``dim``-dimensional subspace through the init point.

    Hyperplane: ``w = w0 + P theta`` (Li et al. 2018; Fort & Scherlis 2019).
    Hypersphere: ``w = r0 (w0 + P theta) / ||w0 + P theta||``, the sphere of the
    initial radius ``r0`` (see :class:`goldisk.SubspaceModule`). ``theta`` (length
    ``dim``) starts at 0 and is then the only trained parameter. A parameter object of
    the goldisk nets, reachable as ``subspace__dim``, ``subspace__kind``, etc., as a
    kernel is of ``GaussianProcessClassifier(kernel=RBF())``:
    ``GoldilocksClassifier(..., subspace=SubspaceProjector(dim=100))``, grid key
    ``goldilocksclassifier__subspace__dim`` in a Pipeline (as a Pipeline step, ``fit``
    raises a ``TypeError`` saying so).

    Parameters
    ----------
    dim : int or None, default=None
        Subspace dimension ``d``, ``1 <= d <= D``. ``None``: the full space (with
        ``kind="hyperplane"`` the module is not wrapped at all; with
        ``kind="hypersphere"`` it trains on the full sphere of radius ``r0``).
    kind : {"hyperplane", "hypersphere"}, default="hyperplane"
    projection : {"auto", "dense", "sparse", "sparse-li", "fastfood", "identity"} or a D x d \
matrix, default="auto"
        Construction of ``P`` (see :func:`goldisk.projections.make_projection`); all
        have unit-norm columns. A ``D x d`` tensor or array is used as it is, columns not
        normalized (:func:`goldisk.projections.as_projection`): ``dim`` must then be None
        or ``d``, and ``metric`` None.
    metric : None, "per_layer" or array-like of shape (D,), default=None
        Row scales of ``P`` (columns renormalized). ``"per_layer"``: each coordinate
        is scaled by the reference init std of its layer (:func:`layer_metric`), so the
        subspace moves each layer in proportion to its own scale. ``None``: isotropic.
    reference : {"xavier", "he", "lecun", "default"}, default="xavier"
        Scheme behind ``metric="per_layer"``; unused otherwise.
    random_state : None, int or generator, default=None
        Seed of ``P``. ``None``: the net's own ``random_state`` decides, so ``P``
        follows the net's seed. An int fixes the same subspace for every net.

    Examples
    --------
    >>> import torch
    >>> from goldisk.models import MLP
    >>> sub = SubspaceProjector(dim=5, random_state=0).build(MLP(4, (3,), 2))
    >>> [name for name, _ in sub.named_parameters()], sub.D
    (['theta'], 23)
    >>> SubspaceProjector(dim=5, random_state=0).to_dense(MLP(4, (3,), 2)).shape
    (23, 5)
    """

    _parameter_constraints = {  # projection and metric depend on each other and on D
        "dim": Dim(),
        "kind": OneOf(KINDS),
        "projection": NO_VALIDATION,
        "metric": NO_VALIDATION,
        "reference": OneOf(REFERENCES),
        "random_state": NO_VALIDATION,  # resolved where P is drawn
    }

    def __init__(self, dim=None, kind="hyperplane", projection="auto", metric=None,
                 reference="xavier", random_state=None):
        self.dim = dim
        self.kind = kind
        self.projection = projection
        self.metric = metric
        self.reference = reference
        self.random_state = random_state

    def fit(self, X=None, y=None, **params):
        """Not a Pipeline step: raises a ``TypeError`` that shows where it goes
        (``GoldilocksClassifier(..., subspace=SubspaceProjector(...))``)."""
        raise not_a_step(self, "subspace", "dim")

    transform = fit

    def _validate(self, D: int | None = None, prefix: str = "") -> None:
        """Raise ``ValueError`` naming ``prefix + param`` for any invalid parameter."""
        validate_params(self, prefix, D=D)
        if not isinstance(self.projection, str):  # the user's own D x d matrix
            P = as_projection(self.projection, D, prefix + "projection")
            if self.dim is not None and self.dim != P.d:
                raise ValueError(f"{prefix}dim={self.dim} but {prefix}projection has d={P.d} "
                                 f"columns; pass {prefix}dim=None (or {P.d}).")
            if self.metric is not None:
                raise ValueError(f"{prefix}metric applies to goldisk's random projections; "
                                 f"scale the rows of {prefix}projection yourself instead.")
        else:
            OneOf(PROJECTIONS).check(self.projection, prefix + "projection")
        if isinstance(self.metric, str) and self.metric != "per_layer":
            raise ValueError(
                f"{prefix}metric must be None, 'per_layer' or an array of length D, "
                f"got {self.metric!r}."
            )
        if self.metric is not None and not isinstance(self.metric, str) and D is not None:
            shape = np.shape(self.metric)
            if shape != (D,):
                raise ValueError(
                    f"{prefix}metric must be None, 'per_layer' or an array of length D={D} "
                    f"(one positive weight per parameter), got shape {shape}."
                )
        if isinstance(self.projection, str) and self.projection == "identity" \
                and self.dim is not None and D is not None \
                and self.dim != D:
            raise ValueError(f"{prefix}projection='identity' needs {prefix}dim=None or D={D}.")

    def metric_vector(self, module: nn.Module):
        """The metric as an array of length D for ``module`` (or None)."""
        if self.metric is None:
            return None
        if isinstance(self.metric, str):
            return layer_metric(module, self.reference)
        return np.asarray(self.metric, dtype=float)

    def make_projection(self, module: nn.Module, generator=None):
        """The random projection ``P`` (a :class:`goldisk.projections.Projection`)."""
        D = ParamLayout(module).D
        self._validate(D)
        if not isinstance(self.projection, str):
            return as_projection(self.projection, D, "projection")
        d = D if self.dim is None else int(self.dim)
        kind = "identity" if self.dim is None else self.projection
        seed = self.random_state if self.random_state is not None else generator
        try:
            return make_projection(kind, D, d, random_state=seed,
                                   metric=self.metric_vector(module))
        except ValueError as exc:  # e.g. a metric of the wrong length
            raise ValueError(f"invalid subspace parameters for D={D}: {exc}") from exc

    def build(self, module: nn.Module, generator=None) -> nn.Module:
        """Wrap ``module`` (a copy) in a :class:`goldisk.SubspaceModule`.

        With ``dim=None`` and ``kind="hyperplane"`` the module itself is returned.
        ``generator`` (torch.Generator or int) seeds ``P`` when ``random_state`` is None.
        """
        self._validate(ParamLayout(module).D)
        if self.dim is None and self.kind == "hyperplane" and isinstance(self.projection, str):
            return module
        return SubspaceModule(module, self.make_projection(module, generator), self.kind,
                              share_projection=True)  # a fresh projection: no copy needed

    def to_dense(self, module: nn.Module, generator=None) -> np.ndarray:
        """The explicit ``D x dim`` matrix ``P`` for ``module`` (small ``D * dim`` only).

        With an int ``random_state`` this is the matrix every net built from this
        projector uses; a fitted net's own matrix is ``net.projection_matrix()``.
        """
        return self.make_projection(module, generator).to_dense().cpu().numpy()
