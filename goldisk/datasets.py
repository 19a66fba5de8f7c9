"""Datasets as small in-memory arrays; nothing is downloaded unless ``download=True``.

Every loader returns a :class:`Dataset` with float32 features ``X`` and int64 labels ``y``.
``"digits"`` (scikit-learn's embedded 8x8 digits) and ``"circles"`` (synthetic) need no
files at all; ``"mnist"``, ``"fashion-mnist"`` and ``"cifar10"`` are read through
torchvision from a local ``root`` directory.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, replace

import numpy as np
import torch

from goldisk._names import dataset_key
from goldisk._rng import check_random_state

__all__ = [
    "Dataset",
    "load_digits",
    "make_circles3",
    "load_torchvision",
    "load_dataset",
    "to_tensors",
    "DATASET_NAMES",
]

DATASET_NAMES = ("digits", "circles", "mnist", "fashion-mnist", "cifar10")


@dataclass
class Dataset:
    """Features, labels and a little metadata.

    Attributes
    ----------
    X : numpy.ndarray of float32, shape (n_samples, ...)
    y : numpy.ndarray of int64, shape (n_samples,)
    name : str
    n_classes : int
    image_shape : tuple of int or None
        ``(channels, height, width)`` for image data, ``None`` otherwise.
    """

    X: np.ndarray
    y: np.ndarray
    name: str
    n_classes: int
    image_shape: tuple | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_features(self) -> int:
        """Number of features per sample once flattened."""
        return int(np.prod(self.X.shape[1:]))

    def split(self, test_size=0.25, random_state=0):
        """Stratified ``(train, test)`` split with :func:`sklearn.model_selection.train_test_split`.

        Examples
        --------
        >>> train, test = load_digits().split(test_size=0.25, random_state=0)
        >>> len(train), len(test)
        (1347, 450)
        """
        from sklearn.model_selection import train_test_split

        X_tr, X_te, y_tr, y_te = train_test_split(
            self.X, self.y, test_size=test_size, random_state=random_state, stratify=self.y
        )
        return replace(self, X=X_tr, y=y_tr), replace(self, X=X_te, y=y_te)


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


def make_circles3(n_samples: int = 1500, noise: float = 0.05, random_state=0,
                  center=(0.0, 0.0)) -> Dataset:
    """Three concentric noisy circles in 2-D, one class per circle (radii 1, 2, 3).

    A three-class analogue of :func:`sklearn.datasets.make_circles`, like the toy
    problem of Vysogorets et al. (2024).  Class ``k`` lies on the circle of radius
    ``k + 1``: angles are uniform on ``[0, 2 pi)`` and isotropic Gaussian noise of
    *absolute* standard deviation ``noise`` (the same for every circle) is added to
    each coordinate.  Classes are balanced (sizes differ by at most one) and the
    samples are shuffled.

    Centred at 0 (the default), the classes cannot be told apart by a bias-free ReLU
    network: it is positively homogeneous in its input, ``f(a x) = a^L f(x)`` for
    ``a > 0``, so every ray from the origin gets one class although it crosses all three
    circles. Pass a ``center`` away from 0 (e.g. ``(4, 4)``) to study homogeneous
    networks that can learn the task.

    Parameters
    ----------
    n_samples : int, default 1500
    noise : float, default 0.05
    random_state : None, int, numpy.random.Generator, ...
        See :func:`goldisk._rng.check_random_state`; the global RNG is never used.
    center : pair of float, default (0, 0)
        Common centre of the circles.

    Examples
    --------
    >>> ds = make_circles3(300, random_state=0)
    >>> ds.X.shape, np.bincount(ds.y).tolist()
    ((300, 2), [100, 100, 100])
    """
    if int(n_samples) < 3:
        raise ValueError(f"n_samples must be at least 3 (one per class), got {n_samples}.")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise}; e.g. noise=0.05.")
    c = np.asarray(center, dtype=np.float64)
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise ValueError(f"center must be two finite numbers, e.g. center=(4, 4); got {center!r}.")
    rng = check_random_state(random_state)
    n_samples = int(n_samples)
    y = np.arange(n_samples, dtype=np.int64) % 3
    y = y[rng.permutation(n_samples)]
    theta = rng.uniform(0.0, 2.0 * np.pi, size=n_samples)
    radius = (y + 1).astype(np.float64)
    X = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    X += noise * rng.standard_normal(X.shape)
    X += c
    return Dataset(X.astype(np.float32), y, "circles", 3, None)


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
                 random_state=0, **kwargs) -> Dataset:
    """Load a dataset by name: "digits", "circles", "mnist", "fashion-mnist" or "cifar10".

    ``root``, ``train`` and ``download`` only apply to the torchvision datasets (digits
    and circles have no fixed split: use :meth:`Dataset.split`); ``random_state`` only
    applies to "circles".  Other keyword arguments go to :func:`load_digits`,
    :func:`make_circles3` or :func:`load_torchvision`.

    Examples
    --------
    >>> load_dataset("circles", n_samples=30).n_classes
    3
    >>> load_dataset("iris")
    Traceback (most recent call last):
    ...
    ValueError: unknown dataset 'iris'; valid names are digits, circles, mnist, ...
    """
    key = dataset_key(name)
    if key == "digits":
        return load_digits(**kwargs)
    if key == "circles":
        return make_circles3(random_state=random_state, **kwargs)
    if key in _TV:
        return load_torchvision(key, root, train=train, download=download, **kwargs)
    raise ValueError(f"unknown dataset {name!r}; valid names are {', '.join(DATASET_NAMES)}.")


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
