"""goldisk: the Goldilocks zone of neural-network initialization.

Measure the radius of a network, move it to a multiple of a reference radius, evaluate
the exact loss Hessian on random hyperplanes and hyperspheres through the init point,
split it into Gauss-Newton and H-terms, and train only inside such subspaces.
"""

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
    subspace_hessian,
)
from .estimators import (
    CurvatureProbe,
    GoldilocksClassifier,
    GoldilocksRegressor,
    GoldilocksSelector,
    InitScaler,
    SubspaceProjector,
)

__version__ = "0.1.0"

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
    "CurvatureProbe",
    "GoldilocksClassifier",
    "GoldilocksRegressor",
    "GoldilocksSelector",
    "InitScaler",
    "SubspaceProjector",
    "__version__",
]
