"""Names the command-line tool offers as choices, kept free of heavy imports so that
building its parser (``goldisk --help``) does not load torch."""

__all__ = ["DECOMPOSE_PARTS", "EXPERIMENTS", "MODEL_NAMES", "dataset_key"]

#: ``goldisk.models.make_model`` names.
MODEL_NAMES = ("mlp", "linear", "lenet300100", "lenet5", "cnn")
#: The experiments ``goldisk reproduce`` runs, in order.
EXPERIMENTS = ("sweep", "subspace-train", "select", "trajectory", "decompose")
#: The parts of ``goldisk decompose`` (Vysogorets et al.).
DECOMPOSE_PARTS = ("scale", "temperature", "inits", "training")


def dataset_key(name) -> str:
    """The canonical dataset name: case, ``_``/``-`` and the usual aliases folded
    (``"FashionMNIST"`` -> ``"fashion-mnist"``, ``"CIFAR-10"`` -> ``"cifar10"``)."""
    key = str(name).lower().replace("_", "-")
    return {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "circles3": "circles"}.get(
        key, key)
