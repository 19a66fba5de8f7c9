"""``InitScaler``: put a network at a chosen multiple of a reference radius."""

from __future__ import annotations

from sklearn.base import BaseEstimator
from torch import nn

from .._names import REFERENCES as SCHEMES
from .._names import SCALER_REFERENCES as REFERENCES
from .._radius import (
    REFERENCE_LAYERS,
    SoftmaxTemperature,
    radius,
    reference_radius,
    rescale_trusted,
)
from ..models import init_weights_
from ._constraints import OneOf, PositiveReal, validate_params

__all__ = ["InitScaler"]

INITS = ("reference", "keep", *SCHEMES)
MODES = ("global", "per_layer")


def not_a_step(obj, param: str | None, key: str) -> TypeError:
    """The error a parameter object raises when used as a Pipeline step: where it goes.

    The parameter objects follow scikit-learn's kernel pattern
    (``GaussianProcessClassifier(kernel=RBF())``, grid key ``kernel__length_scale``).
    """
    name = type(obj).__name__
    if param is None:  # CurvatureProbe: a scorer and the selector's probe
        where = (f"pass it as a scorer, GridSearchCV(..., scoring={{'curv': {obj!r}}}), "
                 f"as GoldilocksSelector(..., probe={obj!r}), or call {name}(...)"
                 ".measure(net, X, y)")
    else:
        where = (f"pass it to the net, GoldilocksClassifier(..., {param}={obj!r}), and "
                 f"search it with the grid key goldilocksclassifier__{param}__{key} (in "
                 f"make_pipeline(StandardScaler(), GoldilocksClassifier(...)))")
    return TypeError(
        f"{name} is a parameter object, not a Pipeline step or transformer (like the kernel "
        f"in GaussianProcessClassifier(kernel=RBF()), grid key kernel__length_scale): {where}."
    )


class InitScaler(BaseEstimator):
    """Initialize a network and move it to ``radius`` times a reference radius.

    The Goldilocks zone (Fort & Scherlis 2019) is a shell of radii ``r = ||w||`` around
    the radius ``r_ref`` of a standard initialization. ``InitScaler`` draws the direction
    of the weights, then rescales all of them so that ``||w|| = radius * r_ref``, and can
    divide the logits by a softmax temperature (Vysogorets et al. 2024). It is a
    parameter object of :class:`GoldilocksClassifier` and :class:`GoldilocksRegressor`,
    reachable as ``init_scaler__radius`` etc.; the nets call :meth:`apply_`. It follows
    scikit-learn's kernel pattern (``GaussianProcessClassifier(kernel=RBF())``, grid key
    ``kernel__length_scale``): ``GoldilocksClassifier(..., init_scaler=InitScaler(...))``,
    grid key ``goldilocksclassifier__init_scaler__radius`` in a Pipeline. It is not a
    Pipeline step: as one, ``fit`` raises a ``TypeError`` saying so.

    Parameters
    ----------
    radius : float, default=1.0
        Target radius in units of the reference radius ``r_ref`` (``1.0`` = a typical
        initialization of the reference scheme). Finite and > 0.
    reference : {"xavier", "he", "lecun", "default", "current"}, default="xavier"
        Scheme defining ``r_ref`` (see :func:`goldisk.reference_radius`, computed from
        the layer shapes, normalization scales counted at 1). Frozen parameters
        (``requires_grad=False``) are neither redrawn nor rescaled. ``"current"``:
        ``r_ref`` is the radius of the module as initialized (its own init), so ``radius``
        is a plain multiplier.
    mode : {"global", "per_layer"}, default="global"
        ``"global"``: one factor for all trainable parameters (Fort & Scherlis), keeping the
        direction of ``w``. ``"per_layer"``: each Linear/Conv layer is put on its own
        shell ``radius * r_ref(layer)`` (see :func:`goldisk.rescale_`); normalization
        scales and other parameters outside Linear/Conv layers keep their values, so with
        such layers ``||w||`` is not ``radius * r_ref`` (only the layers' own norms are).
    temperature : float, default=1.0
        Softmax temperature: the logits are divided by it (a
        :class:`goldisk.SoftmaxTemperature` wrapper, not trained). Finite and > 0.
    init : {"reference", "keep", "xavier", "he", "lecun", "default"}, default="reference"
        How the direction is drawn before rescaling. ``"reference"``: redraw every
        Linear/Conv layer with the ``reference`` scheme ("xavier", "he", "lecun":
        Gaussian, zero biases; "default": PyTorch's uniform, with biases; "current":
        the module's own init is kept). ``"keep"``: keep the
        module's own init. A scheme name redraws with that scheme.

    See Also
    --------
    goldisk.rescale_, goldisk.reference_radius, goldisk.models.init_weights_

    Examples
    --------
    >>> import torch
    >>> from goldisk import radius, reference_radius
    >>> from goldisk.models import MLP
    >>> net = InitScaler(radius=2.0).apply_(MLP(64, (32,), 10), generator=0)
    >>> round(radius(net) / reference_radius(net, "xavier"), 6)
    2.0
    """

    _parameter_constraints = {
        "radius": PositiveReal("1.0"),
        "reference": OneOf(REFERENCES),
        "mode": OneOf(MODES),
        "temperature": PositiveReal("1.0"),
        "init": OneOf(INITS),
    }

    def __init__(self, radius=1.0, reference="xavier", mode="global", temperature=1.0,
                 init="reference"):
        self.radius = radius
        self.reference = reference
        self.mode = mode
        self.temperature = temperature
        self.init = init

    def fit(self, X=None, y=None, **params):
        """Not a Pipeline step: raises a ``TypeError`` that shows where it goes
        (``GoldilocksClassifier(..., init_scaler=InitScaler(...))``)."""
        raise not_a_step(self, "init_scaler", "radius")

    transform = fit

    def _validate(self, prefix: str = "") -> None:
        """Raise ``ValueError`` naming ``prefix + param`` for any invalid parameter."""
        validate_params(self, prefix)

    def _scheme(self) -> str | None:
        """The init scheme to redraw with, or None to keep the module's init."""
        scheme = self.reference if self.init == "reference" else self.init
        return None if scheme in ("current", "keep") else scheme

    def apply_(self, module: nn.Module, generator=None) -> nn.Module:
        """Re-initialize ``module`` in place, rescale it, and wrap it for the temperature.

        Parameters
        ----------
        module : torch.nn.Module
        generator : torch.Generator or int, optional
            Source of randomness for the redraw (``None``: torch's global RNG).

        Returns
        -------
        module : torch.nn.Module
            ``module`` itself, or a :class:`goldisk.SoftmaxTemperature` around it when
            ``temperature != 1``.
        """
        self._validate()
        return self._apply(module, generator)

    def _apply(self, module: nn.Module, generator=None) -> nn.Module:
        """:meth:`apply_` for parameters already validated (the nets check them once, at
        ``initialize``, under their ``init_scaler__`` names)."""
        scheme = self._scheme()
        if scheme is not None:
            init_weights_(module, scheme, generator=generator)
        if self.reference == "current":
            if self.mode == "global":
                rescale_trusted(module, self.radius * radius(module), mode="global")
            else:  # every layer keeps its own shell, multiplied by radius
                for layer in module.modules():
                    if isinstance(layer, REFERENCE_LAYERS):
                        for p in layer.parameters():  # (a parametrization's originals too)
                            if p.requires_grad:  # frozen parameters are constants
                                p.data.mul_(float(self.radius))
        else:
            target = self.radius * self.reference_radius(module)
            rescale_trusted(module, target, mode=self.mode, reference=self.reference)
        if float(self.temperature) != 1.0:
            module = SoftmaxTemperature(module, self.temperature)
        return module

    def reference_radius(self, module: nn.Module) -> float:
        """``r_ref`` of ``module`` under ``reference`` (its radius for ``"current"``)."""
        if self.reference == "current":
            return radius(module)
        return reference_radius(module, self.reference)
