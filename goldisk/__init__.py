"""goldisk: the Goldilocks zone of neural-network initialization.

Measure the radius of a network, move it to a multiple of a reference radius, evaluate
the exact loss Hessian on random hyperplanes and hyperspheres through the init point,
split it into Gauss-Newton and H-terms, and train only inside such subspaces.

Importing ``goldisk`` is cheap: each public name loads its module (and torch,
scikit-learn, skorch) on first use (PEP 562), so ``goldisk --help`` answers at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first access).
_LAZY = {
    **dict.fromkeys(("REFERENCES", "SoftmaxTemperature", "layer_reference_radii", "radius",
                     "reference_radius", "rescale_"), "._radius"),
    "SubspaceModule": "._subspace",
    **dict.fromkeys(("CurvatureResult", "hessian_statistics", "hutchinson", "model_state",
                     "spectral_density", "subspace_hessian", "top_eigenvalues",
                     "trace_estimate"), ".curvature"),
    **dict.fromkeys(("CurvatureProbe", "GoldilocksClassifier", "GoldilocksRegressor",
                     "GoldilocksSelector", "InitScaler", "SubspaceProjector"), ".estimators"),
}
_SUBMODULES = ("callbacks", "cli", "curvature", "datasets", "estimators", "experiments",
               "models", "projections", "sweep")

__all__ = [
    "REFERENCES",
    "SoftmaxTemperature",
    "SubspaceModule",
    "CurvatureResult",
    "hessian_statistics",
    "hutchinson",
    "layer_reference_radii",
    "model_state",
    "radius",
    "reference_radius",
    "rescale_",
    "subspace_hessian",
    "top_eigenvalues",
    "spectral_density",
    "trace_estimate",
    "CurvatureProbe",
    "GoldilocksClassifier",
    "GoldilocksRegressor",
    "GoldilocksSelector",
    "InitScaler",
    "SubspaceProjector",
    "__version__",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module("." + name, __name__)
    else:
        raise AttributeError(f"module 'goldisk' has no attribute {name!r}")
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from ._radius import (
        REFERENCES,
        SoftmaxTemperature,
        layer_reference_radii,
        radius,
        reference_radius,
        rescale_,
    )
    from ._subspace import SubspaceModule
    from .curvature import (
        CurvatureResult,
        hessian_statistics,
        hutchinson,
        model_state,
        spectral_density,
        subspace_hessian,
        top_eigenvalues,
        trace_estimate,
    )
    from .estimators import (
        CurvatureProbe,
        GoldilocksClassifier,
        GoldilocksRegressor,
        GoldilocksSelector,
        InitScaler,
        SubspaceProjector,
    )
