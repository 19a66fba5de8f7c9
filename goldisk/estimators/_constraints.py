"""The parameter objects' constraints, declared once per class and checked in one place.

Each parameter object (``InitScaler``, ``SubspaceProjector``, ``CurvatureProbe``,
``GoldilocksSelector``) declares ``_parameter_constraints = {name: constraint}`` as
scikit-learn's estimators do, and its ``_validate`` calls :func:`validate_params`, which
checks every parameter with its full name (``prefix + name``, e.g.
``init_scaler__radius``, the key a grid search used). Checks that relate two parameters
stay as small explicit code in the class.

scikit-learn's own machinery (``sklearn.utils._param_validation``) is private and its
messages are not goldisk's (goldisk's name the fix), so it is not used: these small
classes produce goldisk's texts. The format differs from scikit-learn's (one constraint
object per parameter, not a list), so ``BaseEstimator._validate_params`` must not be
called on these objects; scikit-learn's ``check_estimator`` does not call it (tested with
scikit-learn 1.9).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._validation import FLOAT_DTYPES, check_choice, is_int

__all__ = ["NO_VALIDATION", "DTYPES", "check_dtype", "check_dim", "validate_params",
           "PositiveReal", "OneOf", "DType", "IntRange", "Dim", "Flag", "NJobs",
           "CallableOrOneOf", "InstanceOf", "Satisfies"]

#: A parameter checked elsewhere (by explicit code in the class, or where it is used).
NO_VALIDATION = "no_validation"

#: The estimators' ``dtype`` values; ``torch.float32``/``torch.float64`` are accepted too.
DTYPES = FLOAT_DTYPES


def check_dtype(value, name: str = "dtype") -> str:
    """``"float32"`` or ``"float64"`` from that string or the torch dtype."""
    for key, dt in DTYPES.items():
        if value is dt:
            return key
    return check_choice(value, tuple(DTYPES), name)


def check_dim(dim, name: str, D: int | None = None, allow_none: bool = True):
    """Validate a subspace dimension: None (if allowed) or an int in [1, D]."""
    if dim is None and allow_none:
        return None
    upper = "" if D is None else f" and <= D={D} (the number of parameters)"
    if not is_int(dim):
        raise ValueError(f"{name} must be None or an int >= 1{upper}, got {dim!r}.")
    if dim < 1 or (D is not None and dim > D):
        raise ValueError(f"{name} must be an int >= 1{upper}, got {name}={dim}.")
    return int(dim)


class _Constraint:
    """``check(value, name, **context)`` raises a ``ValueError`` naming ``name``."""

    def check(self, value, name: str, **context) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class PositiveReal(_Constraint):
    """A finite real number > 0 (not a bool); the message suggests ``name=example``."""

    def __init__(self, example: str):
        self.example = example

    def check(self, value, name, **context):
        msg = f"{name} must be a finite number > 0, got {value!r}; e.g. {name}={self.example}."
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(msg)
        if not math.isfinite(float(value)) or value <= 0:
            raise ValueError(msg)


class OneOf(_Constraint):
    """One of the strings ``choices``."""

    def __init__(self, choices):
        self.choices = tuple(choices)

    def check(self, value, name, **context):
        check_choice(value, self.choices, name)


class DType(_Constraint):
    """``"float32"``/``"float64"`` or the torch dtype."""

    def check(self, value, name, **context):
        check_dtype(value, name)


class IntRange(_Constraint):
    """An int (not a bool) ``>= low``; ``None`` passes when ``allow_none``."""

    def __init__(self, low: int, allow_none: bool = False):
        self.low = low
        self.allow_none = allow_none

    def check(self, value, name, **context):
        if value is None and self.allow_none:
            return
        if not is_int(value) or value < self.low:
            raise ValueError(f"{name} must be an int >= {self.low}, got {value!r}.")


class Dim(_Constraint):
    """A subspace dimension: None or an int in ``[1, D]`` (``D`` from the context)."""

    def check(self, value, name, D=None, **context):
        check_dim(value, name, D)


class Flag(_Constraint):
    """``True`` or ``False``. ``strict``: only bools (Python's or numpy's); otherwise any
    value equal to one of them (``1``, ``0``), as the probe has always accepted."""

    def __init__(self, strict: bool = True):
        self.strict = strict

    def check(self, value, name, **context):
        ok = isinstance(value, bool | np.bool_) if self.strict else value in (True, False)
        if not ok:
            raise ValueError(f"{name} must be True or False, got {value!r}.")


class NJobs(_Constraint):
    """joblib's ``n_jobs``: None or a nonzero int."""

    def check(self, value, name, **context):
        if value is not None and (not is_int(value) or value == 0):
            raise ValueError(f"{name} must be None or a nonzero int (-1: all cores), "
                             f"got {value!r}.")


class CallableOrOneOf(_Constraint):
    """A callable or one of the strings ``choices``."""

    def __init__(self, choices):
        self.choices = tuple(choices)

    def check(self, value, name, **context):
        if not callable(value) and value not in self.choices:
            raise ValueError(f"{name} must be a callable or one of {list(self.choices)}, "
                             f"got {value!r}.")


class InstanceOf(_Constraint):
    """None or an instance of ``cls``."""

    def __init__(self, cls):
        self.cls = cls

    def check(self, value, name, **context):
        if value is not None and not isinstance(value, self.cls):
            raise ValueError(f"{name} must be None or a {self.cls.__name__}, got {value!r}.")


class Satisfies(_Constraint):
    """Whatever ``func(value, name, **context)`` accepts (it raises otherwise)."""

    def __init__(self, func):
        self.func = func

    def check(self, value, name, **context):
        self.func(value, name, **context)


def validate_params(obj, prefix: str = "", skip=(), **context) -> None:
    """Check every parameter of ``obj`` against ``type(obj)._parameter_constraints``, in
    the declared order, naming it ``prefix + name``; ``skip`` names parameters the caller
    checks itself, ``context`` (e.g. ``D``) goes to every constraint."""
    for name, constraint in type(obj)._parameter_constraints.items():
        if constraint == NO_VALIDATION or name in skip:
            continue
        constraint.check(getattr(obj, name), prefix + name, **context)
