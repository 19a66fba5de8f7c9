"""The data side of the goldisk nets (a mixin of ``_GoldilocksNet``): ``X`` validated
once (shape against the fitted one, dtype, native contiguous arrays), reproducible
DataLoaders, and a first forward pass that turns shape errors into messages naming the
``module__*`` parameter to change."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.utils.validation import validate_data
from torch import nn

from .._checks import check_uniform_labels, native_array
from .._rng import MAX_SEED
from . import _fit_checks as fc
from ._constraints import DTYPES, check_dtype

__all__ = ["_DataMixin"]


class _DataMixin:
    """Validation, batching and the first forward pass of the goldisk nets."""

    def _validate_X(self, X, y="no_validation", reset=False, **kw):
        kw.update(reset=reset, dtype=np.dtype(check_dtype(self.dtype)), allow_nd=True)
        fitted = getattr(self, "sample_shape_", ())
        try:
            shape = tuple(np.shape(X)[1:]) if fitted and not reset else ()
        except (ValueError, TypeError):  # ragged lists, array-likes refusing np.shape:
            shape = ()  # validate_data deals with them
        if shape and shape != fitted and (len(fitted) > 1 or len(shape) > 1):
            # validate_data compares X.shape[1] only: images of another size would pass
            fix = "X of that shape"
            if len(fitted) == 3 and shape == (fitted[1], fitted[2], fitted[0]):
                fix = "X.transpose(0, 3, 1, 2): X looks channels-last, the net takes (N, C, H, W)"
            elif (len(shape) == 1 or len(fitted) == 1) and math.prod(shape) == math.prod(fitted):
                # flat <-> image: a reshape keeps the row-major pixel order of both layouts
                fix = f"X.reshape(len(X), {', '.join(map(str, fitted))})"
            raise ValueError(f"X has samples of shape {shape} but the net was fitted on "
                             f"samples of shape {fitted}; pass {fix}.")
        check_uniform_labels(y)
        try:
            if isinstance(y, str):  # predict: X only
                X, y = validate_data(self, X, **kw), None
            else:  # fit: y=None raises "requires y to be passed"
                X, y = validate_data(self, X, y, **kw)
        except ValueError as exc:
            if "infinity" not in str(exc):
                raise
            what = "y" if "Input y" in str(exc) else "X"
            hint = (f" Values beyond 3.4e38 overflow dtype='float32': pass dtype='float64' or "
                    f"scale {what} (e.g. StandardScaler).")
            hint = hint if check_dtype(self.dtype) == "float32" else ""
            raise ValueError(f"{exc} Remove or clip the infinite values of {what}.{hint}"
                             ) from None
        X, y = native_array(X), native_array(y)  # (negative strides: X[::-1])
        if not X.flags.writeable:  # torch warns on read-only arrays (e.g. memmaps)
            X = X.copy()
        if reset:
            self.in_features_ = int(math.prod(X.shape[1:]))
            self.sample_shape_ = tuple(X.shape[1:])
        return X, y

    def get_iterator(self, dataset, training=False):
        """skorch's DataLoader, with shuffled training batches by default and an explicit
        generator, so that iterating never draws from torch's global RNG."""
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        if training:
            kwargs.setdefault("shuffle", True)
            seed = int(self.train_rng_.integers(0, MAX_SEED))
        else:
            seed = 0
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        iterator = self.iterator_train if training else self.iterator_valid
        return iterator(dataset, **kwargs)

    def get_dataset(self, X, y=None):
        """skorch's dataset, with arrays and tensors cast to ``dtype`` first."""
        name = check_dtype(self.dtype)
        if isinstance(X, np.ndarray) and X.dtype != np.dtype(name):
            X = X.astype(name)
        elif torch.is_tensor(X) and X.dtype != DTYPES[name]:
            X = X.to(DTYPES[name])
        return super().get_dataset(X, y)

    def check_data(self, X, y=None):
        pass  # done by fit / partial_fit (skorch's version would overwrite classes_)

    @torch.no_grad()
    def _check_forward(self, X):
        """Run the module on two samples of ``X``: a wrong input size, or a number of
        outputs that does not match ``y``, becomes a ``ValueError`` naming ``module__*``
        instead of a shape error from inside torch. Eval mode, modes restored."""
        module = self.module_
        fc.check_trainable(module, self.max_epochs)
        modes = [(m, m.training) for m in module.modules()]
        module.eval()
        try:
            out = module(torch.as_tensor(X[:2]).to(self.device))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"module could not process X with sample shape {tuple(X.shape[1:])} ({msg}); "
                f"{self._input_hint(X)}."
            ) from None
        finally:
            for m, mode in modes:
                m.training = mode
        expected = self._n_outputs()
        standard = isinstance(self.criterion_, nn.CrossEntropyLoss | nn.NLLLoss | nn.MSELoss)
        fc.check_output_type(out, self.criterion_, standard)
        if not torch.is_tensor(out) or expected is None or not standard:
            return
        got = int(math.prod(out.shape[1:]))
        if out.dim() < 2 or got != expected:
            what = "classes" if isinstance(self.criterion_, nn.CrossEntropyLoss | nn.NLLLoss) \
                else "targets per sample"
            fix = (f"pass module__out_features={expected} (or a module with {expected} "
                   "outputs)") if self._module_accepts("out_features") else \
                f"give the module {expected} outputs"
            raise ValueError(
                f"module returns outputs of shape {tuple(out.shape[1:])} per sample but y has "
                f"{expected} {what}; {fix}."
            )

    def _prepare_xy(self, X, y):
        """``(X, y)`` as the module sees them (validated, cast, labels encoded); used by
        :class:`~goldisk.CurvatureProbe` and the callbacks."""
        self.check_is_fitted()
        return self._prepare_fit(X, y, reset=False)
