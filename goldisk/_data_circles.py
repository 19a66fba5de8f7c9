"""Three concentric circles: goldisk's toy set and the variant of Vysogorets et al."""

from __future__ import annotations

import numpy as np

from goldisk._data_base import Dataset
from goldisk._rng import check_random_state

__all__ = ["make_circles3", "make_circles_vdk", "VDK_CLASS_SIZES"]

#: Class sizes of the 2,400 training points of Vysogorets et al.'s saved circles set
#: (their repository's ``circles_train_data_y.pt``), inner ring first.
VDK_CLASS_SIZES = (654, 739, 1007)


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


def _proportional_sizes(n: int, weights) -> np.ndarray:
    """``n`` split in proportion to ``weights`` (largest remainders get the extra points)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = n * w / w.sum()
    sizes = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[: n - sizes.sum()]] += 1
    return sizes


def make_circles_vdk(n_samples: int = 2400, noise: float = 0.03, random_state=0,
                     radii=(0.3, 0.55, 0.8), max_radius: float = 0.9) -> Dataset:
    """Circles with the sizes and proportions of Vysogorets et al.'s set (2024).

    Their demo data is a saved file, not a generator: 2,400 training points centred at
    the origin, every point within radius 0.9, classes of 654 / 739 / 1007 points. This
    generator matches those facts: ``n_samples`` points (default 2,400) split in the
    proportions 654 : 739 : 1007 (exactly those sizes at 2,400), class ``k`` on the ring
    of radius ``radii[k]`` with Gaussian *radial* noise of standard deviation ``noise``,
    the radius clipped to ``[0, max_radius]``, angles uniform. The ring radii and the noise
    are goldisk's choice (their file's are not published); the inner ring gets the
    smallest class, as the circumference suggests.

    Like every centred circles set it cannot be learned by a bias-free ReLU network
    (constant along every ray from the origin): such a net can at best predict the
    majority class, 1007 / 2400 = 0.42. Vysogorets et al. only measure curvature on it.

    Parameters
    ----------
    n_samples : int, default 2400
    noise : float, default 0.03
        Standard deviation of the radial noise (absolute, the same for every ring).
    random_state : None, int, numpy.random.Generator, ...
        See :func:`goldisk._rng.check_random_state`.
    radii : three increasing floats, default (0.3, 0.55, 0.8)
    max_radius : float, default 0.9
        No point lies farther from the origin.

    Examples
    --------
    >>> ds = make_circles_vdk()
    >>> ds.X.shape, np.bincount(ds.y).tolist()
    ((2400, 2), [654, 739, 1007])
    >>> bool(np.linalg.norm(ds.X, axis=1).max() <= 0.9)
    True
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) \
            or n_samples < 3:
        raise ValueError(f"n_samples must be an int >= 3 (one per class), got {n_samples!r}.")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise}; e.g. noise=0.03.")
    if not (np.isfinite(max_radius) and max_radius > 0):
        raise ValueError(f"max_radius must be a finite number > 0, got {max_radius}.")
    r = np.asarray(radii, dtype=np.float64)
    if r.shape != (3,) or not np.all(np.isfinite(r)) or not np.all(np.diff(r) > 0) \
            or r[0] <= 0 or r[-1] > max_radius:
        raise ValueError(f"radii must be three increasing numbers in (0, max_radius="
                         f"{max_radius}], e.g. radii=(0.3, 0.55, 0.8); got {radii!r}.")
    rng = check_random_state(random_state)
    sizes = _proportional_sizes(int(n_samples), VDK_CLASS_SIZES)
    y = np.repeat(np.arange(3, dtype=np.int64), sizes)
    y = y[rng.permutation(len(y))]
    theta = rng.uniform(0.0, 2.0 * np.pi, size=len(y))
    rho = np.clip(r[y] + noise * rng.standard_normal(len(y)), 0.0, max_radius)
    X = np.stack([rho * np.cos(theta), rho * np.sin(theta)], axis=1)
    # float32 rounding must not push a clipped point past max_radius
    X32 = X.astype(np.float32)
    over = np.linalg.norm(X32.astype(np.float64), axis=1) > max_radius
    X32[over] = (X[over] * (1 - 1e-6)).astype(np.float32)
    return Dataset(X32, y, "circles-vdk", 3, None)
