"""Curvature of the loss: exact subspace Hessians, Gauss-Newton split, Hutchinson, state."""

import warnings

from ._gauss_newton import subspace_gauss_newton
from ._hessian import MAX_FULL_D, CurvatureResult, subspace_hessian
from ._hutchinson import hutchinson
from ._init_stats import (
    INIT_STATISTICS,
    curvature_statistics,
    gradient_norm,
    grasp,
    init_statistics,
    jacob_cov,
    lambda_max,
    ntk_condition_number,
    snip,
    synflow,
)
from ._lanczos import top_eigenvalues
from ._losses import LOSSES, logit_gradient, logit_hessian, per_sample_loss
from ._operator import CurvatureOperator
from ._spectrum import plot_spectral_density, spectral_density
from ._state import logit_statistics, model_state
from ._stats import (
    STATISTICS,
    batch_statistics,
    eigen_statistics,
    hessian_statistics,
    warn_statistics,
)
from ._suggest_lr import LRSuggestion, suggest_lr
from ._trace import TRACE_METHODS, layer_curvature, trace_estimate

# torch's forward-mode AD registers its jvp decompositions with torch.jit.script on first
# use, which warns on recent torch; the warning is about torch internals, not user code.
warnings.filterwarnings(
    "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
)

__all__ = [
    "CurvatureResult",
    "subspace_hessian",
    "subspace_gauss_newton",
    "hutchinson",
    "top_eigenvalues",
    "CurvatureOperator",
    "spectral_density",
    "plot_spectral_density",
    "trace_estimate",
    "layer_curvature",
    "TRACE_METHODS",
    "hessian_statistics",
    "eigen_statistics",
    "batch_statistics",
    "model_state",
    "per_sample_loss",
    "logit_gradient",
    "logit_hessian",
    "LOSSES",
    "STATISTICS",
    # for the estimators and experiments built on the engine
    "MAX_FULL_D",
    "logit_statistics",
    "warn_statistics",
    "INIT_STATISTICS",
    "curvature_statistics",
    "gradient_norm",
    "grasp",
    "init_statistics",
    "jacob_cov",
    "lambda_max",
    "ntk_condition_number",
    "snip",
    "synflow",
    "suggest_lr",
    "LRSuggestion",
]
