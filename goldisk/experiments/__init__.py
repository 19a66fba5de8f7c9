"""The experiments of the papers, each a function that returns a pandas DataFrame.

======================  ==================================================================
``subspace_train``      train inside random hyperplanes/hyperspheres at radius r (Fort Fig. 2)
``select``              curvature and loss at init against training speed (Fort Fig. 6)
``trajectory``          the radius during training, free and held fixed (Chang)
``decompose``           G-term/H-term, temperature, model state, trainability (Vysogorets)
``trainability``        every init statistic against accuracy after Adam and GD training
``edge_of_stability``   full-batch GD at multiples of 2 / lambda_max(init) (Cohen Fig. 1)
``reproduce``           all of them (and the radius sweep) plus a markdown report
======================  ==================================================================
"""

from ._decompose import DECOMPOSE_COLUMNS, DECOMPOSE_PARTS, decompose, model_depth
from ._edge import classify_edge_runs, edge_of_stability, plot_edge_of_stability
from ._plots import (
    plot_select,
    plot_select_slopes,
    plot_subspace_train,
    plot_sweep_norms,
    plot_trajectory,
)
from ._plots_decompose import (
    plot_decompose_curvature,
    plot_decompose_inits,
    plot_decompose_training,
)
from ._protocol import RunHooks, Training
from ._report import (
    EXPERIMENTS,
    ResultFolder,
    build_model,
    reproduce,
    split_dataset,
    write_report,
)
from ._select import (
    SELECT_COLUMNS,
    SELECT_MEASURES,
    measure_correlations,
    select,
    selection_analysis,
)
from ._subspace_train import (
    SUBSPACE_COLUMNS,
    SUBSPACE_KINDS,
    intrinsic_dimension,
    subspace_train,
)
from ._summaries import (
    finalize_decompose,
    finalize_select,
    finalize_subspace_train,
    finalize_sweep,
    finalize_trajectory,
)
from ._trainability import (
    TRAINABILITY_OPTIMIZERS,
    plot_trainability,
    trainability,
    trainability_columns,
    trainability_correlations,
)
from ._training import OPTIMIZERS, Units, evaluate, log_grid, model_radius, point_at, train
from ._trajectory import TRAJECTORY_COLUMNS, fit_radius_growth, trajectory

__all__ = [
    "DECOMPOSE_COLUMNS",
    "DECOMPOSE_PARTS",
    "EXPERIMENTS",
    "OPTIMIZERS",
    "ResultFolder",
    "RunHooks",
    "SELECT_COLUMNS",
    "SELECT_MEASURES",
    "SUBSPACE_COLUMNS",
    "SUBSPACE_KINDS",
    "TRAJECTORY_COLUMNS",
    "Training",
    "Units",
    "decompose",
    "evaluate",
    "fit_radius_growth",
    "intrinsic_dimension",
    "log_grid",
    "measure_correlations",
    "model_depth",
    "model_radius",
    "plot_decompose_curvature",
    "plot_decompose_inits",
    "plot_decompose_training",
    "plot_select",
    "plot_select_slopes",
    "plot_subspace_train",
    "plot_sweep_norms",
    "plot_trajectory",
    "point_at",
    "reproduce",
    "select",
    "selection_analysis",
    "subspace_train",
    "train",
    "trajectory",
    "write_report",
    # the pieces the command-line tool assembles a run from
    "build_model",
    "split_dataset",
    "finalize_decompose",
    "finalize_select",
    "finalize_subspace_train",
    "finalize_sweep",
    "finalize_trajectory",
    "TRAINABILITY_OPTIMIZERS",
    "classify_edge_runs",
    "edge_of_stability",
    "plot_edge_of_stability",
    "plot_trainability",
    "trainability",
    "trainability_columns",
    "trainability_correlations",
]
