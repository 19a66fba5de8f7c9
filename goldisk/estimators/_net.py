"""The shared base of ``GoldilocksClassifier`` and ``GoldilocksRegressor`` (``_nets``):
nested ``InitScaler``/``SubspaceProjector`` parameters, module construction with the
chosen radius and subspace, data checks and reproducible randomness."""

from __future__ import annotations

import copy
import inspect
import math
import warnings

import numpy as np
import torch
from skorch import NeuralNet
from torch import nn

from .._flat import ParamLayout
from .._rng import MAX_SEED, SeedBundle, fork_global_rng, torch_generator
from .._subspace import SubspaceModule
from .._validation import check_device, is_int
from . import _fit_checks as fc
from ._auto_lr import optimizer_kwargs, resolve_auto_lr
from ._constraints import DTYPES, check_dtype
from ._init_scaler import InitScaler
from ._lr import subspace_lr
from ._net_data import _DataMixin
from ._subspace_projector import SubspaceProjector

__all__ = ["_GoldilocksNet"]

_NESTED = {"init_scaler": InitScaler, "subspace": SubspaceProjector}


def check_fit_params(fit_params: dict) -> None:
    # skorch passes fit parameters to the module's forward: a weighted loss is not one
    if "sample_weight" in fit_params:
        raise ValueError("sample_weight is not supported: the loss is the plain mean over "
                         "samples. Resample X (e.g. repeat rows) to weight samples.")


class _GoldilocksNet(_DataMixin):
    """What the classifier and the regressor share (a mixin placed before skorch's class)."""

    prefixes_ = NeuralNet.prefixes_ + list(_NESTED)

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        params.pop("_params_to_validate", None)  # skorch bookkeeping, not a parameter
        return params

    def _get_param_names(self):
        # also the list a misspelled set_params(...) prints: no skorch bookkeeping in it
        return [k for k in super()._get_param_names() if k != "_params_to_validate"]

    def set_params(self, **params):
        """Set parameters; ``init_scaler__*`` and ``subspace__*`` go to the nested objects.

        On an initialized net, changing ``init_scaler``, ``subspace``, their parameters or
        ``dtype`` re-initializes the module (with the same seeds), the criterion and the
        optimizer, as skorch does for ``module__*``.
        """
        nested, top, rest = {}, {}, {}
        for key, value in params.items():
            head, sep, tail = key.partition("__")
            if head in _NESTED:
                if sep:
                    nested.setdefault(head, {})[tail] = value
                else:
                    top[head] = value
            else:
                rest[key] = value
        if rest:
            super().set_params(**rest)
            lr = rest.get("lr", 0.0)
            if (lr is None or isinstance(lr, str)) and self.initialized_:  # skorch wrote
                self._initialize_optimizer(reason="Re-initializing optimizer.")  # it as is
        for name, value in top.items():
            setattr(self, name, value)
        for name, sub in nested.items():
            obj = getattr(self, name)
            if obj is None:
                raise ValueError(
                    f"cannot set {', '.join(name + '__' + k for k in sub)}: {name} is None. "
                    f"Pass {name}={_NESTED[name].__name__}(...) first."
                )
            obj.set_params(**sub)
        if self.initialized_ and (top or nested or "dtype" in params):
            keys = sorted(k for k in params if k.partition("__")[0] in _NESTED or k == "dtype")
            msg = self._format_reinit_msg("module", dict.fromkeys(keys))
            self._initialize_module(reason=msg)
            self._initialize_criterion(reason="Re-initializing criterion.")
            self._initialize_optimizer(reason="Re-initializing optimizer.")
        return self

    def _check_goldisk_params(self) -> None:
        e = self.max_epochs
        if not is_int(e) or e < 0:
            raise ValueError(f"max_epochs must be an int >= 0 (0: initialize only), got {e!r}.")
        check_dtype(self.dtype)
        fc.check_net_params(self)  # lr, warm_start by type (not "0.1", not "no")
        if self.device is not None:
            check_device(self.device)
        for name, cls in _NESTED.items():
            obj = getattr(self, name)
            if obj is not None and not isinstance(obj, cls):
                raise ValueError(f"{name} must be None or a {cls.__name__}, got {obj!r}.")
            if obj is not None:
                obj._validate(prefix=name + "__")
            stray = sorted(k for k in self._params_to_validate if k.startswith(name + "__"))
            if stray:
                raise ValueError(
                    f"{stray[0]} was passed to __init__; pass {name}={cls.__name__}(...) "
                    f"instead, or use set_params({stray[0]}=...)."
                )

    # ------------------------------------------------------------------ initialization
    def initialize(self):
        """Validate the goldisk parameters, draw the seeds, then skorch's ``initialize``."""
        self._check_goldisk_params()
        try:  # random_state resolved here only; the bundle flows down unchanged
            self.init_seeds_ = SeedBundle.draw(self.random_state)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid random_state: {exc}") from exc
        self.train_rng_ = np.random.default_rng(self.init_seeds_.train)
        self._params_checked = True  # initialize_module below trusts them: checked once
        try:
            return super().initialize()
        finally:
            del self._params_checked

    def _module_kwargs(self) -> dict:
        """``module__*`` parameters, plus ``in_features``/``out_features`` inferred from the
        data seen by ``fit`` when the module class accepts them and they are not given."""
        kwargs = self.get_params_for("module")
        if isinstance(self.module, nn.Module) or not callable(self.module):
            return kwargs
        try:
            names = inspect.signature(self.module).parameters
        except (TypeError, ValueError):
            return kwargs
        inferred = {"in_features": getattr(self, "in_features_", None),
                    "out_features": self._n_outputs()}
        for name, value in inferred.items():
            if name in names and name not in kwargs and value is not None:
                kwargs[name] = value
        in_features = inferred["in_features"]
        if {"in_channels", "image_size"} <= set(names) and "in_features" not in names \
                and in_features is not None:  # goldisk's CNNs: (C, S) from C * S * S
            from ..models import IMAGE_SHAPES

            c, s = kwargs.get("in_channels"), kwargs.get("image_size")
            shape = getattr(self, "sample_shape_", ())
            if c is None and s is None and len(shape) == 3 and shape[1] == shape[2]:
                c, s = shape[0], shape[1]  # X given as (N, C, S, S)
            if c is None and s is None:
                c, s = IMAGE_SHAPES.get(in_features, (None, None))
            elif c is None and in_features % (s * s) == 0:
                c = in_features // (s * s)
            elif s is None and in_features % c == 0 and \
                    math.isqrt(in_features // c) ** 2 == in_features // c:
                s = math.isqrt(in_features // c)
            if c is not None and s is not None:
                kwargs.setdefault("in_channels", c)
                kwargs.setdefault("image_size", s)
        return kwargs

    def _module_accepts(self, name: str) -> bool:
        """Whether the module class (or an instance's class) takes ``name``."""
        cls = type(self.module) if isinstance(self.module, nn.Module) else self.module
        try:
            return name in inspect.signature(cls).parameters
        except (TypeError, ValueError):
            return False

    def _input_hint(self, X=None) -> str:
        """How to make the module's input size match ``X``, for this module."""
        shape = tuple(X.shape[1:]) if X is not None else ()
        conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in self.module_.modules())
        if conv and len(shape) == 3 and shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
            return (f"X looks channels-last (N, H, W, C) = (N, {shape[0]}, {shape[1]}, "
                    f"{shape[2]}), but convolutions take (N, C, H, W): pass "
                    "X.transpose(0, 3, 1, 2) (numpy) or X.permute(0, 3, 1, 2) (torch)")
        if len(shape) == 2 and self._module_accepts("image_size"):
            return (f"X has no channel axis: pass X[:, None] (shape (N, 1, {shape[0]}, "
                    f"{shape[1]})) for one-channel images")
        if self._module_accepts("in_features"):
            return (f"pass module__in_features={self.in_features_} or a module whose input "
                    "size matches X.shape[1:]")
        if self._module_accepts("image_size"):
            return ("pass module__in_channels and module__image_size with in_channels * "
                    f"image_size**2 = {self.in_features_}, or reshape X")
        return ("give X the shape the module expects (e.g. X.reshape(-1, 1, 8, 8) for a "
                "convolutional module) or change the module's input size")

    def _check_module_kwargs(self) -> None:
        given = self.get_params_for("module")
        for name, value, what in (("in_features", self.in_features_, "X has"),
                                  ("out_features", self._n_outputs(), "y needs")):
            if name in given and given[name] != value:
                raise ValueError(
                    f"module__{name}={given[name]} but {what} {value} "
                    f"{'features' if name == 'in_features' else 'outputs'}; remove "
                    f"module__{name} to infer it from the data"
                    f"{self._classes_hint() if name == 'out_features' else ''}."
                )

    def _classes_hint(self) -> str:
        return ""

    def initialize_module(self):
        """Build the module reproducibly from ``random_state``, apply ``init_scaler``, then
        wrap it with ``subspace``; torch's global RNG state is left unchanged."""
        seeds = getattr(self, "init_seeds_", None)
        if seeds is None:
            raise ValueError("call initialize() (or fit) before initialize_module().")
        if not isinstance(seeds, SeedBundle):  # a dict, as init_seeds_ was before
            seeds = SeedBundle(**dict(seeds))
        if not getattr(self, "_params_checked", False):  # (set_params' re-initialization)
            self._check_goldisk_params()
        kwargs = self._module_kwargs()
        with fork_global_rng(seeds.module):
            try:
                module = self.initialized_instance(self.module, kwargs)
            except TypeError as exc:
                if isinstance(self.module, nn.Module):
                    fix = ("module is an instance, so module__* parameters rebuild it from "
                           "its class with only those arguments: pass the class "
                           f"(module={type(self.module).__name__}) with every argument as "
                           "module__<name>=..., or drop the module__* parameters")
                else:
                    try:
                        takes = ", ".join(inspect.signature(self.module).parameters)
                    except (TypeError, ValueError):
                        takes = "?"
                    fix = (f"Pass exactly the arguments it takes ({takes}) as "
                           "module__<name>=...; in_features and out_features are inferred "
                           "from the data when the class takes them")
                    if getattr(self, "in_features_", None) is None:  # initialize() before fit
                        fix += (" at fit: before any fit (initialize(), then load_params) "
                                "pass them, e.g. module__in_features=64, "
                                "module__out_features=10, classes=[...], or fit with "
                                "max_epochs=0 first")
                raise ValueError(
                    f"could not build module={self.module!r} with {kwargs}: {exc}. {fix}."
                ) from exc
        if module is self.module:
            module = copy.deepcopy(module)  # never modify the caller's module
        if next(module.parameters(), None) is None:
            raise ValueError(
                f"module {type(module).__name__} has no parameters to train; pass a module "
                "with at least one trainable layer (e.g. goldisk.models.MLP or nn.Linear)."
            )
        dtype = DTYPES[check_dtype(self.dtype)]
        if self.init_scaler is not None:
            module = fc._apply_scaler(self.init_scaler, module, dtype, seeds.init)
        module = module.to(dtype)
        if self.subspace is not None:
            self.subspace._validate(ParamLayout(module).D, prefix="subspace__")
            module = self.subspace.build(module, generator=torch_generator(seeds.subspace))
        self.module_ = module
        return self

    def get_params_for_optimizer(self, prefix, named_parameters):
        """skorch's optimizer arguments with ``lr`` resolved and recorded as ``lr_``:
        ``None`` (the default) is 1e-3 in the full space and
        :func:`~goldisk.estimators.subspace_lr` inside a subspace; ``"auto"`` is the rate
        :func:`goldisk.curvature.suggest_lr` measures at each new init (``fit`` sets it,
        see ``lr_suggestion_``)."""
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        if "lr" in kwargs and kwargs["lr"] is None:
            rho = 1.0 if self.init_scaler is None else self.init_scaler.radius
            kwargs["lr"] = subspace_lr(self.optimizer, self.module_, rho)
        kwargs = optimizer_kwargs(self, kwargs)
        if prefix == "optimizer":
            self.lr_ = kwargs.get("lr")
        return args, kwargs

    @property
    def _default_callbacks(self):
        from ..callbacks import NonFiniteStopper

        # overflow (a huge radius or learning rate) stops training with a clear message
        # instead of leaving NaN weights; callbacks__nonfinite_stopper=None turns it off,
        # and a NonFiniteStopper among the user's callbacks replaces it
        user = [cb[1] if isinstance(cb, tuple) else cb for cb in (self.callbacks or [])]
        if any(isinstance(cb, NonFiniteStopper) for cb in user):
            return super()._default_callbacks
        return [*super()._default_callbacks, ("nonfinite_stopper", NonFiniteStopper())]

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """skorch's loop inside a forked global RNG seeded from ``random_state``."""
        with fork_global_rng(int(self.train_rng_.integers(0, MAX_SEED)), self.device):
            return super().fit_loop(X, y, epochs=epochs, **fit_params)

    def fit(self, X, y, **fit_params):
        """Validate ``(X, y)``, (re-)initialize unless ``warm_start``, and train
        ``max_epochs`` epochs (``max_epochs=0``: initialize only)."""
        check_fit_params(fit_params)
        X, y = self._prepare_fit(X, y, reset=not (self.warm_start and self.initialized_))
        self._check_module_kwargs()
        if not self.warm_start or not self.initialized_:
            self.initialize()
            resolve_auto_lr(self, X, y)  # lr="auto": measured at the new init
        self._check_forward(X)
        return self._train(X, y, _routing_method="fit", **fit_params)

    def _train(self, X, y, **fit_params):
        with fc.training_hints():
            return NeuralNet.partial_fit(self, X, y, **fit_params)

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Train ``max_epochs`` more epochs without re-initializing (initializes if needed).

        ``classes`` (classifiers, as in scikit-learn): every label the stream will hold,
        used on the first call (when the net is built) and ignored afterwards.
        """
        check_fit_params(fit_params)
        reset = not self.initialized_
        X, y = self._prepare_fit(X, y, reset=reset, classes=classes if reset else None)
        if not self.initialized_:
            self.initialize()
            resolve_auto_lr(self, X, y)
        self._check_forward(X)
        return self._train(X, y, **fit_params)

    def _raw_predict(self, X):
        self.check_is_fitted()
        if not isinstance(X, torch.utils.data.Dataset):  # skorch's validation split passes
            X, _ = self._validate_X(X)  # its Dataset, made from the data fit validated
        out = NeuralNet.predict_proba(self, X)
        if not np.isfinite(out).all():
            warnings.warn("the module's outputs are not finite (NaN or inf): the weights or "
                          "the initialization radius overflow this dtype, so the predictions "
                          "mean nothing.", RuntimeWarning, stacklevel=3)
        return out

    def projection_matrix(self) -> np.ndarray:
        """The explicit ``D x d`` projection of a subspace net (for small ``D * d``)."""
        self.check_is_fitted()
        if not isinstance(self.module_, SubspaceModule):
            raise ValueError("this net has no subspace (subspace=None or dim=None).")
        return self.module_.projection.to_dense().cpu().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags
