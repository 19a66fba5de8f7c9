"""The vocabulary: every name goldisk offers as a choice, defined once here.

Kept free of heavy imports (no torch) so that building the command-line parser
(``goldisk --help``) can offer the same choices without loading torch.
"""

__all__ = ["DATASET_NAMES", "DECOMPOSE_PARTS", "EXPERIMENTS", "LOSSES", "MODEL_NAMES",
           "PROJECTIONS", "REFERENCES", "SCALER_REFERENCES", "SCORES", "SHARPNESS", "STATE",
           "STATISTICS", "SUBSPACE_KINDS", "SUBSPACE_PROJECTIONS", "dataset_key"]

#: ``goldisk.datasets.load_dataset`` names ("file" is the user's own .npz).
DATASET_NAMES = ("digits", "circles", "mnist5k", "circles-vdk", "file", "mnist",
                 "fashion-mnist", "cifar10")

#: ``goldisk.models.make_model`` names.
MODEL_NAMES = ("mlp", "linear", "lenet300100", "lenet5", "cnn")
#: The experiments ``goldisk reproduce`` runs, in order.
EXPERIMENTS = ("sweep", "subspace-train", "select", "trajectory", "decompose")
#: The parts of ``goldisk decompose`` (Vysogorets et al.).
DECOMPOSE_PARTS = ("scale", "temperature", "inits", "training")

#: Init schemes with a reference radius (``reference_radius``, ``init_weights_``).
REFERENCES = ("xavier", "he", "lecun", "default")
#: ``InitScaler(reference=...)``: a scheme, or ``"current"`` (the module's own radius).
SCALER_REFERENCES = (*REFERENCES, "current")
#: Subspaces through a point: ``w0 + P theta``, or the sphere of radius ``||w0||``.
SUBSPACE_KINDS = ("hyperplane", "hypersphere")
#: ``make_projection(kind=...)``.
PROJECTIONS = ("dense", "sparse", "sparse-li", "fastfood", "identity", "auto")
#: The projections that draw a random subspace (``identity`` is the whole space).
SUBSPACE_PROJECTIONS = tuple(k for k in PROJECTIONS if k != "identity")
#: Losses whose curvature the engine differentiates exactly.
LOSSES = ("cross_entropy", "mse")

#: What ``hessian_statistics`` returns for one matrix.
STATISTICS = ("trace", "frobenius", "trace_ratio", "frac_positive", "eig_min", "eig_max")
#: The model-state columns of ``model_state`` that ``CurvatureProbe`` records.
STATE = ("loss", "accuracy", "confidence", "entropy", "logit_grad_norm", "zero_logit_frac")
#: Full-space extreme eigenvalues (``CurvatureProbe(sharpness=True)``: Lanczos products).
SHARPNESS = ("lambda_max", "lambda_min", "ggn_lambda_max")
#: Every column ``CurvatureProbe.measure`` can return that may serve as ``score``: the
#: statistics of ``H``, of its Gauss-Newton part ``g_`` and H-term ``h_``, the state and
#: the (opt-in) full-space sharpness.
SCORES = (*STATISTICS, *("g_" + s for s in STATISTICS), *("h_" + s for s in STATISTICS),
          "g_dominance", *STATE, *SHARPNESS)


def dataset_key(name) -> str:
    """The canonical dataset name: case, ``_``/``-`` and the usual aliases folded
    (``"FashionMNIST"`` -> ``"fashion-mnist"``, ``"CIFAR-10"`` -> ``"cifar10"``)."""
    key = str(name).lower().replace("_", "-")
    return {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "circles3": "circles",
            "mnist-5k": "mnist5k", "circles-vysogorets": "circles-vdk",
            "npz": "file"}.get(key, key)
