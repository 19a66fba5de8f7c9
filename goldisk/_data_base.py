"""The :class:`Dataset` container every goldisk loader returns."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["Dataset"]


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
        >>> from goldisk.datasets import load_digits
        >>> train, test = load_digits().split(test_size=0.25, random_state=0)
        >>> len(train), len(test)
        (1347, 450)
        """
        from sklearn.model_selection import train_test_split

        X_tr, X_te, y_tr, y_te = train_test_split(
            self.X, self.y, test_size=test_size, random_state=random_state, stratify=self.y
        )
        return replace(self, X=X_tr, y=y_tr), replace(self, X=X_te, y=y_te)
