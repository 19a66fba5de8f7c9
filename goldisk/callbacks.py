"""skorch callbacks that record Goldilocks-zone quantities into ``net.history``.

Each callback keeps its parameters in ``__init__`` and resets its state in
``initialize`` / ``on_train_begin``; values are recorded once per epoch with
``net.history.record``, so ``net.history[:, "radius"]`` gives the trajectory.

Examples
--------
>>> import numpy as np
>>> from goldisk import GoldilocksClassifier
>>> from goldisk.models import MLP
>>> rng = np.random.default_rng(0)
>>> X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
>>> net = GoldilocksClassifier(MLP, module__hidden=(8,), max_epochs=2, random_state=0,
...                            callbacks=[RadiusTracker(), ZeroLogitTracker()])
>>> len(net.fit(X, y).history[:, "radius"])
2
"""

from __future__ import annotations

import math
import uuid

import numpy as np
import torch
from skorch.callbacks import Callback

from ._callbacks_sharpness import MeasuringCallback, SharpnessTracker
from ._flat import parameter_vector
from ._measured import callback_data as _data
from ._measured import train_part as _train_part
from ._names import SCORES
from ._subspace import SubspaceModule
from ._validation import is_int

__all__ = [
    "RadiusTracker",
    "CurvatureTracker",
    "SharpnessTracker",
    "ZeroLogitTracker",
    "NonFiniteStopper",
    "NonFiniteTrainingError",
]


class NonFiniteTrainingError(FloatingPointError):
    """Raised by :class:`NonFiniteStopper` when the loss or the weights stop being finite."""


def full_point(net) -> torch.Tensor:
    """The net's full parameter vector ``w`` (``w(theta)`` for a subspace net), detached."""
    module = net.module_
    if isinstance(module, SubspaceModule):
        return module.point().detach().clone()
    return parameter_vector(module).clone()


def _array_like(a) -> bool:
    return torch.is_tensor(a) or isinstance(a, np.ndarray)


@torch.no_grad()
def _logits(net, X) -> torch.Tensor:
    """The module's outputs on ``X`` in eval mode, in the net's batches, every submodule's
    mode restored and torch's global RNG untouched (``net.forward``'s DataLoader draws from
    it: used, inside a forked RNG, only for inputs that are not one array)."""
    module = net.module_
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        if not (_array_like(X) or isinstance(X, list | tuple)):  # a dict, a Dataset
            with torch.random.fork_rng(devices=[]):
                return net.forward(X, training=False)
        ref = next((t for t in module.parameters() if t.is_floating_point()), None)
        X = X if torch.is_tensor(X) else torch.as_tensor(np.asarray(X))
        size = getattr(net, "batch_size", None)
        size = size if isinstance(size, int) and size > 0 else len(X)
        out = []
        for i in range(0, len(X), max(size, 1)):
            xb = X[i:i + size]
            if ref is not None:
                xb = xb.to(device=ref.device, dtype=ref.dtype if xb.is_floating_point()
                           else xb.dtype)
            out.append(module(xb))
        return torch.cat(out)
    finally:
        for m, mode in modes:
            m.training = mode


class RadiusTracker(Callback):
    """Record ``radius`` (``||w||``) and ``distance_from_init`` (``||w - w_init||``) each epoch.

    For a subspace net ``w`` is the full point ``w(theta)``, not ``theta``. ``w_init`` is
    the point before the first training step of the current module: it is kept across
    ``partial_fit``, ``warm_start`` fits and ``set_params(callbacks__...)``, and taken anew
    when the module is rebuilt (a fresh ``fit``, or ``set_params`` of the module's
    parameters). A net resumed with skorch's ``LoadInitState`` measures from the loaded
    point (the original initialization is not in the checkpoint).

    Parameters
    ----------
    prefix : str, default=""
        Prepended to the two history keys.
    """

    def __init__(self, prefix=""):
        self.prefix = prefix

    def initialize(self):
        # kept through a re-initialization of the callbacks: the module decides (below)
        if not hasattr(self, "initial_"):
            self.initial_, self.token_ = None, None
        return self

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training:
            return
        # the module carries a token of its own: a rebuilt module has none (or another)
        token = getattr(net.module_, "_goldisk_token", None)
        if token is None:
            token = uuid.uuid4().hex
            net.module_._goldisk_token = token
        if getattr(self, "token_", None) is None and getattr(self, "initial_", None) \
                is not None:  # pickled before tokens existed: keep its start point
            self.token_ = token
        if self.token_ != token or self.initial_ is None:
            self.token_, self.initial_ = token, full_point(net)

    def on_epoch_end(self, net, **kwargs):
        w = full_point(net)
        net.history.record(self.prefix + "radius", float(w.double().norm()))
        dist = float((w - self.initial_.to(w.device)).double().norm())
        net.history.record(self.prefix + "distance_from_init", dist)


class CurvatureTracker(MeasuringCallback):
    """Record a :class:`~goldisk.CurvatureProbe`'s mean statistics every ``every`` epochs.

    Keys are ``prefix + column`` (e.g. ``curv_trace_ratio``, ``curv_g_trace``,
    ``curv_loss``); epochs in between get no entry. skorch's ``PrintLog`` (``verbose=1``)
    takes its header from the first epoch, so with ``every > 1`` the columns of the
    measured epochs are printed without one: pass ``columns`` to keep the log narrow and
    ``callbacks__print_log__keys_ignored=[...]`` to leave them out of it.

    Parameters
    ----------
    probe : CurvatureProbe
    every : int, default=1
    X, y : array-like, optional
        Data to measure on (labels as given to the net); default: the training data.
    prefix : str, default="curv_"
    columns : list of str or None, default=None
        The probe's columns to record (e.g. ``["trace_ratio", "g_dominance"]``); None:
        all of them (26 for a classifier). Only what they need is computed: state columns
        alone (``loss``, ``accuracy``...) need no Hessian, and without ``g_``/``h_``
        columns the Gauss-Newton split is skipped.
    """

    def __init__(self, probe, every=1, X=None, y=None, prefix="curv_", columns=None):
        super().__init__(every, X, y)
        self.probe = probe
        self.prefix = prefix
        self.columns = columns

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self._check_data()
        e = self.every
        if not is_int(e) or e < 1:
            raise ValueError(f"every must be an int >= 1, got {e!r}.")
        if not hasattr(self.probe, "measure"):
            raise ValueError(f"probe must be a CurvatureProbe, got {self.probe!r}.")
        if self.columns is not None and (isinstance(self.columns, str) or any(
                c not in SCORES for c in self.columns)):
            raise ValueError(f"columns must be None or a list of {list(SCORES)}, got "
                             f"{self.columns!r}.")
        self._take_data(net, X, y)

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if epoch % self.every:
            return
        table = self.probe._measure_net(net, *self.data_, columns=self.columns)
        means = table.drop(columns=["subspace"]).mean(numeric_only=True)
        for key, value in means.items():
            if self.columns is None or key in self.columns:
                net.history.record(self.prefix + key, float(value))


class ZeroLogitTracker(Callback):
    """Record ``zero_logit_frac``, the fraction of (sample, class) logits exactly 0.

    Vysogorets et al. (2024) observe that it grows while ReLU nets initialized at some
    scales train. ``X`` defaults to the training data.

    Parameters
    ----------
    X : array-like, optional
    name : str, default="zero_logit_frac"
    """

    def __init__(self, X=None, name="zero_logit_frac"):
        self.X = X
        self.name = name

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.X_ = X if self.X is None else _data(net, self.X, None, None)[0]
        self.split_taken_ = self.X is not None

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        if not self.split_taken_:
            self.X_, self.split_taken_ = _train_part(net, dataset_train, (self.X_, None))[0], \
                True

    def on_train_end(self, net, **kwargs):
        self.X_ = None

    def on_epoch_end(self, net, **kwargs):
        logits = _logits(net, self.X_)
        net.history.record(self.name, float((logits == 0).double().mean()))


class NonFiniteStopper(Callback):
    """Stop training with a clear message when the loss or the weights become NaN or inf.

    At a radius far above the Goldilocks zone the logits overflow within a few steps.

    Parameters
    ----------
    on_nonfinite : {"raise", "stop"}, default="raise"
        ``"raise"``: raise :class:`NonFiniteTrainingError`. ``"stop"``: record
        ``nonfinite=True`` in the history, warn, and end training (the net is kept).
        Either way the weights stay finite: a non-finite gradient is dropped before the
        optimizer step, and weights a step still made non-finite are restored to the
        start of the epoch.
    check_weights : bool, default=True
        Also check every parameter at the end of each epoch.
    """

    def __init__(self, on_nonfinite="raise", check_weights=True):
        self.on_nonfinite = on_nonfinite
        self.check_weights = check_weights

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        if self.on_nonfinite not in ("raise", "stop"):
            raise ValueError(
                f"on_nonfinite must be 'raise' or 'stop', got {self.on_nonfinite!r}."
            )
        self.bad_gradient_ = False

    def on_epoch_begin(self, net, **kwargs):
        # the last finite point, restored if a step still makes the weights non-finite
        self.last_good_ = [p.detach().clone() for p in net.module_.parameters()]

    def on_grad_computed(self, net, named_parameters, training=False, **kwargs):
        # a non-finite gradient must not reach the optimizer: without a gradient every
        # torch optimizer leaves the parameter (and its state) as it is
        params = [p for _, p in named_parameters]
        grads = [p.grad for p in params if p.grad is not None]
        if not training or not grads:
            return
        # one float64 sum per tensor (NaN and inf propagate; float32 values cannot overflow
        # it), one host sync per step
        dev = grads[0].device
        sums = torch.stack([g.sum(dtype=torch.float64).to(dev) for g in grads])
        if not bool(sums.isfinite().all()):
            for p in params:
                p.grad = None
            self.bad_gradient_ = True

    def on_train_end(self, net, **kwargs):
        self.last_good_ = None

    @torch.no_grad()
    def _restore(self, net) -> str:
        params = list(net.module_.parameters())
        if all(bool(torch.isfinite(p).all()) for p in params):
            return " The weights are those before the failing step."
        saved = getattr(self, "last_good_", None)
        if saved is None or len(saved) != len(params):
            return " The weights are not finite."
        for p, good in zip(params, saved, strict=True):
            p.copy_(good)
        return " The weights are restored to the start of the epoch."

    def _fail(self, net, what: str):
        epoch = len(net.history)
        hint = ""
        if getattr(net, "init_scaler", None) is not None:
            hint = f" (init_scaler__radius={net.init_scaler.radius!r})"
        msg = (f"{what} became non-finite in epoch {epoch}; the initialization radius"
               f"{hint} or the learning rate (lr={getattr(net, 'lr_', net.lr)!r}) is probably "
               "too large."
               f"{self._restore(net)}")
        if self.on_nonfinite == "raise":
            raise NonFiniteTrainingError(msg)
        import warnings

        warnings.warn(msg + " Training stopped.", RuntimeWarning, stacklevel=2)
        net.history.record("nonfinite", True)
        raise KeyboardInterrupt  # skorch's way to end training early, keeping the net

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs):
        value = float(loss.detach()) if torch.is_tensor(loss) else loss
        if training and value is not None and not math.isfinite(value):
            self._fail(net, f"the training loss ({value})")
        if training and self.bad_gradient_:
            self._fail(net, "the gradient")

    def on_epoch_end(self, net, **kwargs):
        if self.check_weights and not bool(torch.isfinite(full_point(net)).all()):
            self._fail(net, "the weights")
