"""``GoldilocksClassifier`` and ``GoldilocksRegressor``: skorch nets with a chosen
initialization radius, an optional training subspace and reproducible randomness."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import EpochScoring

from ._net import _GoldilocksNet

__all__ = ["GoldilocksClassifier", "GoldilocksRegressor"]


def encoded_accuracy(net, X, y):
    """Accuracy for an ``EpochScoring`` inside ``fit``: skorch hands callbacks the encoded
    labels ``0..n_classes-1`` (positions in ``classes_``), so they are compared with the
    argmax of ``predict_proba``, not with ``predict`` (which returns the original labels)."""
    return float(np.mean(net.predict_proba(X).argmax(axis=1) == np.asarray(y)))


_SHARED_DOC = """
    Parameters
    ----------
    module : torch.nn.Module class or instance
        Returns {what}. A class is built with the ``module__*`` parameters; when it
        accepts ``in_features`` / ``out_features`` and they are not given, they are
        inferred from the data at ``fit``. An instance is copied, never modified.
    criterion, optimizer : default {criterion}, torch.optim.Adam
    lr : float, "auto" or None, default=None
        ``None``: ``1e-3`` in the full space; with ``subspace=`` set, the rule of
        :func:`goldisk.estimators.subspace_lr`: ``max(1e-3, 30 / d) * max(1, radius)``
        for Adam and other adaptive optimizers (``radius``: ``init_scaler__radius``),
        ``10 / max(1, radius)`` for SGD, because a subspace run needs a step one to two
        orders of magnitude above the full space's (measured in ``docs/user_guide.md``).
        ``"auto"``: measured at each new init by :func:`goldisk.curvature.suggest_lr`
        (SGD: ``2 / lambda_max``; Adam: the preconditioned sharpness), see
        ``lr_suggestion_``. The value used is ``lr_`` after ``initialize`` (``fit`` for
        ``"auto"``). A number (or ``optimizer__lr``) is used as given.
    max_epochs : int, default=10
        ``0`` means "evaluate at initialization": ``fit`` initializes (a classifier also
        fits ``classes_``) without training or recording anything; ``predict`` works.
    batch_size : int, default=128
        Training batches are shuffled (``iterator_train__shuffle=False`` to turn off).
    train_split : callable or None, default=None
        skorch's validation split; ``None`` trains on all of ``X``.
    verbose : int, default=0
    init_scaler : InitScaler or None, default=None
        Radius and temperature of the initialization (``init_scaler__radius`` etc.).
        ``None`` keeps the module's own (PyTorch default) initialization.
    subspace : SubspaceProjector or None, default=None
        Train only ``theta`` in a random subspace (``subspace__dim``, ``subspace__kind``);
        ``None`` trains all parameters.
    dtype : {{"float32", "float64"}}, default="float32"
        Precision of the module and of the data: float64 input (e.g. from
        ``StandardScaler``) is cast to it. Curvature is always measured in float64.
    random_state : None, int or numpy Generator, default=None
        Seeds the module's construction, the re-initialization, the projection and the
        training order (batches, dropout) without touching torch's or numpy's global
        RNG: the same int gives identical fits.
    **kwargs
        Any other skorch parameter (``module__*``, ``callbacks``, ``iterator_train__*``...).
"""


class GoldilocksClassifier(_GoldilocksNet, NeuralNetClassifier):
    __doc__ = """Neural-network classifier with a controlled initialization radius (skorch).

    The module returns logits; the loss is cross-entropy; labels of any type are encoded
    to ``0..n_classes-1`` (``classes_``), and ``predict`` returns the original labels.
    skorch callbacks see the encoded labels: ``valid_acc`` accounts for it, and a scoring
    callback of your own should compare ``predict_proba(X).argmax(1)`` with ``y`` (as
    :func:`goldisk.estimators.encoded_accuracy` does), not ``predict(X)``.
    """ + _SHARED_DOC.format(what="logits", criterion="torch.nn.CrossEntropyLoss") + """
    classes : array-like or None, default=None
        Through ``**kwargs`` (skorch's parameter): all labels; ``None`` infers them from
        ``y`` at ``fit``.

    Attributes
    ----------
    module_ : torch.nn.Module
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    history : skorch.History
    init_seeds_ : goldisk._rng.SeedBundle
        The seeds drawn from ``random_state`` at the last ``initialize`` (a frozen mapping
        ``{"module", "init", "subspace", "train"}``, read as a dict or by attribute).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from goldisk import GoldilocksClassifier, InitScaler, SubspaceProjector
    >>> from goldisk.models import MLP
    >>> X, y = load_digits(return_X_y=True)
    >>> net = GoldilocksClassifier(MLP, module__hidden=(32,), init_scaler=InitScaler(1.0),
    ...                            subspace=SubspaceProjector(dim=50), max_epochs=2,
    ...                            random_state=0)
    >>> net.fit(X[:200] / 16, y[:200]).predict(X[:3] / 16).shape
    (3,)
    """

    def __init__(self, module, *, criterion=torch.nn.CrossEntropyLoss,
                 optimizer=torch.optim.Adam, lr=None, max_epochs=10, batch_size=128,
                 train_split=None, verbose=0, init_scaler=None, subspace=None,
                 dtype="float32", random_state=None, **kwargs):
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr,
                         max_epochs=max_epochs, batch_size=batch_size,
                         train_split=train_split, verbose=verbose, **kwargs)
        self.init_scaler = init_scaler
        self.subspace = subspace
        self.dtype = dtype
        self.random_state = random_state

    @property
    def _default_callbacks(self):
        # skorch's valid_acc compares predict() (original labels) with the encoded y of the
        # validation Dataset: right only for labels 0..K-1 already
        return [(name, EpochScoring(encoded_accuracy, name="valid_acc", lower_is_better=False))
                if name == "valid_acc" else (name, cb) for name, cb in super()._default_callbacks]

    def _n_outputs(self):
        try:
            return len(self.classes_)
        except AttributeError:
            return None

    def _classes_hint(self) -> str:
        return ", or pass classes=<all labels>"

    def _prepare_fit(self, X, y, reset, classes=None):
        X, y = self._validate_X(X, y, reset=reset)
        check_classification_targets(y)
        if reset:
            if classes is not None and self.classes is not None:
                raise ValueError("classes was given both to the constructor and to "
                                 "partial_fit; pass it once.")
            self.classes_inferred_ = np.unique(y if classes is None else np.asarray(classes))
            if self.classes is None and len(self.classes_inferred_) < 2:
                raise ValueError(
                    f"y has 1 class ({self.classes_inferred_.tolist()}); a classifier "
                    "needs samples of at least 2 classes. Pass data with 2 or more classes, "
                    "or classes=[...] listing every label."
                )
        try:
            classes = np.asarray(self.classes_)
        except AttributeError:  # initialize()d, never fitted (a probe measuring the init):
            classes = np.unique(y)  # the labels of y, without storing them
        order = np.argsort(classes, kind="stable")
        pos = np.clip(np.searchsorted(classes[order], y), 0, len(classes) - 1)
        unknown = classes[order][pos] != y
        if np.any(unknown):
            raise ValueError(f"y contains labels not in classes_ {classes.tolist()}: "
                             f"{np.unique(y[unknown]).tolist()}. classes_ comes from the first "
                             "fit or partial_fit; pass classes=[...] listing every label to "
                             "the first partial_fit call (or to the constructor).")
        return X, order[pos].astype(np.int64)

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits), float64, columns as ``classes_``;
        each row sums to 1 in float64 (renormalized after a float32 softmax)."""
        proba = self._raw_predict(X).astype(np.float64)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The most probable label for each sample."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_)[proba.argmax(axis=1)]


class GoldilocksRegressor(_GoldilocksNet, NeuralNetRegressor):
    __doc__ = """Neural-network regressor with a controlled initialization radius (skorch).

    Mean squared error on the module's outputs; ``y`` of shape ``(n,)`` or
    ``(n, n_outputs)``, and ``predict`` returns the same shape (float64).
    """ + _SHARED_DOC.format(what="predictions", criterion="torch.nn.MSELoss") + """
    Attributes
    ----------
    module_ : torch.nn.Module
    n_outputs_ : int
    n_features_in_ : int
    history : skorch.History

    Examples
    --------
    >>> import numpy as np
    >>> from goldisk import GoldilocksRegressor
    >>> from goldisk.models import MLP
    >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = X.sum(1)
    >>> GoldilocksRegressor(MLP, module__hidden=(8,), max_epochs=1,
    ...                     random_state=0).fit(X, y).predict(X).shape
    (50,)
    """

    def __init__(self, module, *, criterion=torch.nn.MSELoss, optimizer=torch.optim.Adam,
                 lr=None, max_epochs=10, batch_size=128, train_split=None, verbose=0,
                 init_scaler=None, subspace=None, dtype="float32", random_state=None,
                 **kwargs):
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr,
                         max_epochs=max_epochs, batch_size=batch_size,
                         train_split=train_split, verbose=verbose, **kwargs)
        self.init_scaler = init_scaler
        self.subspace = subspace
        self.dtype = dtype
        self.random_state = random_state

    def _n_outputs(self):
        return getattr(self, "n_outputs_", None)

    @available_if(lambda self: False)
    def predict_proba(self, X):
        """Not available for a regressor (skorch's would return raw outputs); use predict."""

    def _prepare_fit(self, X, y, reset, classes=None):
        if classes is not None:
            raise ValueError("classes is for classifiers; a regressor's partial_fit takes "
                             "none.")
        X, y = self._validate_X(X, y, reset=reset, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=X.dtype)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if reset:
            self.y_ndim_ = y.ndim
            self.n_outputs_ = n_outputs
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} target(s) per sample but the net was fitted "
                             f"with {self.n_outputs_}; pass y of the same shape, or call fit "
                             "(without warm_start) to start over.")
        return X, y.reshape(len(y), -1)

    def predict(self, X):
        """Predictions, float64, of shape ``(n,)`` if ``y`` was 1-D at fit."""
        out = self._raw_predict(X).astype(np.float64)
        return out.ravel() if getattr(self, "y_ndim_", 2) == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
