"""Names the command-line tool offers as choices, kept free of heavy imports so that
building its parser (``goldisk --help``) does not load torch."""

__all__ = ["DATASET_NAMES", "DECOMPOSE_PARTS", "EXPERIMENTS", "MODEL_NAMES", "dataset_key"]

#: ``goldisk.datasets.load_dataset`` names ("file" is the user's own .npz).
DATASET_NAMES = ("digits", "circles", "mnist5k", "circles-vdk", "file", "mnist",
                 "fashion-mnist", "cifar10")

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
    return {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "circles3": "circles",
            "mnist-5k": "mnist5k", "circles-vysogorets": "circles-vdk",
            "npz": "file"}.get(key, key)
