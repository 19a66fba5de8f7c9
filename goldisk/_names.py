"""Names the command-line tool offers as choices, kept free of heavy imports so that
building its parser (``goldisk --help``) does not load torch."""

__all__ = ["DECOMPOSE_PARTS", "EXPERIMENTS", "MODEL_NAMES"]

#: ``goldisk.models.make_model`` names.
MODEL_NAMES = ("mlp", "linear", "lenet300100", "lenet5", "cnn")
#: The experiments ``goldisk reproduce`` runs, in order.
EXPERIMENTS = ("sweep", "subspace-train", "select", "trajectory", "decompose")
#: The parts of ``goldisk decompose`` (Vysogorets et al.).
DECOMPOSE_PARTS = ("scale", "temperature", "inits", "training")
