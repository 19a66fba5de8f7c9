"""The scikit-learn / skorch face of goldisk: estimators, parameter objects and probes.

``GoldilocksClassifier`` / ``GoldilocksRegressor`` are skorch nets whose initialization
radius (``InitScaler``) and training subspace (``SubspaceProjector``) are nested,
grid-searchable parameters; ``CurvatureProbe`` measures (and scores) curvature;
``GoldilocksSelector`` keeps the best of several random initializations.
"""

from ._init_criteria import InitStatisticCriterion
from ._init_scaler import InitScaler
from ._lr import subspace_lr
from ._nets import GoldilocksClassifier, GoldilocksRegressor, encoded_accuracy
from ._probe import SCORES, CurvatureProbe
from ._selector import GoldilocksSelector
from ._subspace_projector import SubspaceProjector, layer_metric

__all__ = [
    "SCORES",
    "CurvatureProbe",
    "GoldilocksClassifier",
    "GoldilocksRegressor",
    "GoldilocksSelector",
    "InitScaler",
    "InitStatisticCriterion",
    "SubspaceProjector",
    "encoded_accuracy",
    "layer_metric",
    "subspace_lr",
]
