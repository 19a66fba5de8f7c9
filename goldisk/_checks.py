"""Type checks for boolean and numeric parameters, and the one place arrays are normalized.

Python's truthiness makes ``share_projection="no"`` true and ``lr="0.1"`` fail deep inside
an optimizer; these checks refuse such values where they enter, naming the parameter.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = ["check_bool", "check_real", "native_array", "finite_or_warn", "nonfinite_cause",
           "check_uniform_labels", "training_hint"]


def check_bool(value, name: str) -> bool:
    """``value`` as a bool: ``True``/``False`` (numpy's ``bool_`` too); a string such as
    ``"no"``, a number or ``None`` is a ``TypeError`` naming ``name``."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} "
                    f"({type(value).__name__}); a string such as 'no' would count as True.")


def check_real(value, name: str, *, positive: bool = False, finite: bool = True) -> float:
    """``value`` as a float: a real number (int, float, numpy scalar, 0-d tensor), not a
    bool and not a string; ``finite`` (default) and ``positive`` (> 0) are checked too."""
    if torch.is_tensor(value) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        hint = f" (pass {name}={value}, a number, not a string)" if isinstance(
            value, str) and _parses(value) else ""
        raise TypeError(f"{name} must be a real number, got {value!r} "
                        f"({type(value).__name__}){hint}.")
    out = float(value)
    if finite and not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if positive and not out > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    return out


def _parses(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def native_array(a):
    """``a`` ready for ``torch.as_tensor``: a numpy array with negative strides
    (``X[::-1]``, ``X[:, ::-1]``) or a non-native byte order (``'>f4'``, e.g. from a FITS
    or big-endian file) becomes a contiguous native copy, which torch can take
    ("negative strides are not supported"); anything else (tensors, already-good arrays,
    read-only memmaps, which are only read) is returned as is. The one place goldisk
    normalizes array input: the engine's ``check_data`` and the estimators' ``X``."""
    if not isinstance(a, np.ndarray):
        return a
    if any(s < 0 for s in a.strides) or not a.dtype.isnative:
        a = np.array(a, dtype=a.dtype.newbyteorder("=") if a.dtype.byteorder != "|"
                     else a.dtype, order="C", copy=True)
    return a


def finite_or_warn(values: dict, cause: str, stacklevel: int = 3) -> dict:
    """``values`` (a dict of floats) with every entry NaN and a ``RuntimeWarning`` naming
    ``cause`` when any entry is not finite: a statistic computed from non-finite outputs
    (an accuracy or entropy of NaN logits) looks finite but means nothing."""
    import warnings

    if all(math.isfinite(v) for v in values.values() if isinstance(v, float)):
        return values
    warnings.warn(f"{cause}: every statistic is NaN.", RuntimeWarning, stacklevel=stacklevel)
    return {k: (float("nan") if isinstance(v, float) else v) for k, v in values.items()}


def nonfinite_cause(model) -> str:
    """Why a model's outputs are not finite: its NaN/inf parameters, named, if it has any;
    else an overflow of the forward pass (huge radius, tiny temperature, huge inputs)."""
    from ._flat import nonfinite_parameters

    bad = nonfinite_parameters(model)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        return f"the model has NaN or infinite parameters ({', '.join(bad[:3])}{more})"
    return ("the model's outputs are not finite (an overflow: a huge radius, a tiny "
            "temperature or huge inputs for this dtype?)")


def check_uniform_labels(y, name: str = "y") -> None:
    """Refuse labels mixing numbers and strings (``[0, "a", 1]``): scikit-learn calls them
    "Unknown label type: unknown" without saying why."""
    if isinstance(y, str) or y is None:
        return
    arr = y if isinstance(y, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(y, dtype=object) if isinstance(y, list | tuple) else None
        except (TypeError, ValueError):
            return
    if arr is None or arr.dtype != object:
        return
    kinds = {"str" if isinstance(v, str | bytes) else "number"
             for v in arr.ravel()[:100_000]}
    if len(kinds) > 1:
        raise ValueError(f"{name} mixes numbers and strings as labels; use one type, e.g. "
                         f"{name} = np.asarray({name}).astype(str).")


def training_hint(exc: BaseException) -> str | None:
    """A fix for an error torch raises while training, or None."""
    if "Expected more than 1 value per channel when training" in str(exc):
        return ("a training batch of one sample reached a BatchNorm layer (the last batch: "
                "len(X) % batch_size == 1); pass iterator_train__drop_last=True or another "
                "batch_size.")
    return None
