"""Input validation for the engine (plain PyTorch functions taking ``model, X, y``).

scikit-learn validates the estimators' inputs; the engine functions
(:func:`goldisk.hutchinson`, :func:`goldisk.model_state`, the probe) take arrays,
tensors or pandas objects directly. These helpers turn bad input into a ``ValueError`` or
``TypeError`` that names the argument and the fix, before anything reaches torch, so a
user never sees a shape error from deep inside ``torch.nn.functional``.
"""

from __future__ import annotations

import numbers
import threading

import numpy as np
import torch
from torch import nn
from torch.nn.utils.parametrizations import _SpectralNorm, _WeightNorm
from torch.nn.utils.spectral_norm import SpectralNorm as _SpectralNormHook
from torch.nn.utils.weight_norm import WeightNorm as _WeightNormHook

from ._checks import check_bool, check_real, native_array

__all__ = ["check_data", "check_device", "check_model", "check_outputs", "model_device",
           "check_positive_int", "check_float_dtype", "check_scales", "deterministic",
           "mode_dependent", "second_order", "TRANSFORMS_LOCK", "check_bool", "check_real",
           "native_array"]

#: The precisions the engine computes in.
FLOAT_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def is_int(value) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's); a bool is not a count."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_choice(value, choices, name: str) -> str:
    """``value`` if it is one of the strings ``choices``, else a ``ValueError`` naming
    ``name`` and the choices."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


def check_positive_int(value, name: str, allow_none: bool = False):
    """``value`` as an int >= 1 (``None`` passes when ``allow_none``); a bool, a fraction
    or anything else is a ``ValueError`` naming ``name``."""
    if value is None and allow_none:
        return None
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        what = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return int(value)


def check_float_dtype(dtype, name: str = "dtype") -> torch.dtype:
    """``torch.float32`` / ``torch.float64`` as a torch dtype; also their names, numpy's
    float32/float64 and Python's ``float`` (float64, as in ``tensor.to(float)``)."""
    if isinstance(dtype, torch.dtype):
        if dtype in FLOAT_DTYPES.values():
            return dtype
    elif dtype is float:
        return torch.float64
    elif dtype is not None:  # (np.dtype(None) would be float64)
        try:
            key = np.dtype(dtype).name
        except TypeError:
            key = None
        if key in FLOAT_DTYPES:
            return FLOAT_DTYPES[key]
    raise ValueError(f"{name} must be torch.float32 or torch.float64 (or 'float32' / "
                     f"'float64'), got {dtype!r}; other dtypes (half precision, integers) "
                     "are not supported.")


def check_scales(scales, name: str = "scales"):
    """``None`` or a non-empty sequence of finite numbers, as a list of floats."""
    if scales is None:
        return None
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__iter__"):
        raise ValueError(f"{name} must be None or a sequence of finite numbers (e.g. "
                         f"[{scales!r}]), got {scales!r}.")
    try:
        values = [float(s) for s in scales]
    except (TypeError, ValueError):
        values = []
    if not values or not all(np.isfinite(values)):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, got "
                         f"{scales!r}.")
    return values

#: Serializes goldisk's ``torch.func`` work (``jvp`` over ``grad``, ``vmap``) between
#: threads: torch's forward-mode AD levels are process-global, and two threads computing
#: Hessians at once fail with "Trying to access a forward AD level with an invalid index"
#: (e.g. a CurvatureProbe scorer under joblib's threading backend). Reentrant, so nested
#: engine calls are fine; processes (loky, dask, ray) are not affected.
TRANSFORMS_LOCK = threading.RLock()

_ROWS = 8192  # rows checked for finiteness at a time (bounded extra memory)


def second_order():
    """Context for second derivatives: attention (``F.scaled_dot_product_attention``,
    ``nn.MultiheadAttention``) through its math kernel, the same function, as the fused
    CPU/GPU kernels have no double backward ("derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented")."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def _as_array(value, name: str):
    """A dense numpy array or torch tensor from array-like ``value``."""
    if torch.is_tensor(value):
        return value
    try:
        import scipy.sparse as sp

        if sp.issparse(value):
            raise TypeError(
                f"{name} is a scipy sparse matrix, but curvature needs dense data; pass "
                f"{name}.toarray() (or a dense numpy array)."
            )
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        pass
    if hasattr(value, "to_numpy") and hasattr(value, "dtypes"):  # pandas DataFrame / Series
        value = value.to_numpy()
        if not value.flags.writeable:  # copy-on-write views; torch warns on read-only data
            value = value.copy()
    arr = native_array(np.asarray(value))  # negative strides, foreign byte order
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == np.bool_):
        raise TypeError(
            f"{name} must be a numeric array (numpy, torch or pandas), got dtype {arr.dtype} "
            f"from {type(value).__name__}; convert it, e.g. np.asarray({name}, dtype=float)."
        )
    return arr


def _all_finite(a) -> bool:
    for start in range(0, len(a), _ROWS):
        block = a[start : start + _ROWS]
        if torch.is_tensor(block):
            if block.is_floating_point() and not bool(torch.isfinite(block).all()):
                return False
        elif np.issubdtype(block.dtype, np.floating) and not np.isfinite(block).all():
            return False
    return True


def check_data(X, y, *, name_X: str = "X", name_y: str = "y"):
    """Validate ``(X, y)`` for the engine and return them as arrays or tensors.

    Dense numpy arrays and torch tensors pass through unchanged (a tensor keeps its
    device); pandas objects become numpy arrays. Raises ``TypeError`` for sparse or
    non-numeric input and ``ValueError`` for ``X`` with fewer than 2 dimensions, zero
    samples, NaN or infinite entries, or a ``y`` of a different length.

    Examples
    --------
    >>> X, y = check_data(np.ones((3, 2)), [0, 1, 0])
    >>> X.shape, y.tolist()
    ((3, 2), [0, 1, 0])
    """
    X = _as_array(X, name_X)
    y = _as_array(y, name_y)
    if X.ndim < 2:
        raise ValueError(
            f"{name_X} must have shape (n_samples, n_features, ...), got shape "
            f"{tuple(X.shape)}; reshape a single feature with {name_X}.reshape(-1, 1)."
        )
    if len(X) == 0:
        raise ValueError(f"{name_X} is empty (0 samples); pass at least one sample.")
    if y.ndim == 0 or len(y) != len(X):
        got = "a scalar" if y.ndim == 0 else f"{len(y)} samples"
        raise ValueError(
            f"{name_X} has {len(X)} samples but {name_y} has {got}; pass one label (or "
            "target row) per sample."
        )
    if not _all_finite(X):
        raise ValueError(
            f"{name_X} contains NaN or infinite values; remove or impute them (e.g. "
            "sklearn.impute.SimpleImputer) before measuring curvature."
        )
    if not _all_finite(y):
        raise ValueError(f"{name_y} contains NaN or infinite values; remove those samples.")
    return X, y


def check_model(model, name: str = "model") -> nn.Module:
    """``model`` must be a torch module with at least one trainable parameter, and
    PyTorch's second derivatives through it must be right.

    Weight normalization is refused: PyTorch's double backward of ``_weight_norm`` is
    wrong (``torch.autograd.gradgradcheck(torch._weight_norm, ...)`` fails in torch 2.14),
    so the Hessian would be silently wrong, while the loss and gradient are right.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}.")
    if next(model.parameters(), None) is None:
        raise ValueError(
            f"{name} ({type(model).__name__}) has no parameters, so its loss has no "
            "curvature; pass a module with at least one trainable layer (e.g. nn.Linear)."
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"every parameter of {name} ({type(model).__name__}) is frozen "
            "(requires_grad=False), so there is nothing to measure; unfreeze the ones to "
            "study with p.requires_grad_(True)."
        )
    for path, m in model.named_modules():
        if isinstance(m, _WeightNorm) or any(isinstance(h, _WeightNormHook)
                                             for h in m._forward_pre_hooks.values()):
            raise ValueError(
                f"{name} uses weight normalization (in {path or type(model).__name__!r}), "
                "whose second derivative PyTorch computes wrongly (gradgradcheck of "
                "torch._weight_norm fails), so its Hessian would be silently wrong. Write "
                "the layer's weight as g * v / v.norm(...) in forward instead, or remove it "
                "with torch.nn.utils.parametrize.remove_parametrizations."
            )
    return model


def check_device(device, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that holds data and is usable on this machine, or a
    ``ValueError`` naming ``name`` (a CUDA device without CUDA, ``meta``, an unknown
    string, a CUDA index that does not exist)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{name} must be a torch device such as 'cpu', 'cuda' or 'cuda:0'; "
                         f"got {device!r}.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={device!r} asked for but no CUDA device is available; "
                         "use 'cpu'.")
    if dev.type == "meta":
        raise ValueError(f"{name}='meta' holds no data (shapes only); use 'cpu' or 'cuda'.")
    try:  # e.g. mps on a machine without it, or a CUDA index that does not exist
        torch.zeros(1, device=dev) + 1
    except (RuntimeError, AssertionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first if len(first) <= 100 else first[:97] + "..."
        raise ValueError(f"{name}={device!r} cannot be used here ({first}); use 'cpu' or "
                         "'cuda'.") from None
    return dev


def model_device(model: nn.Module, device=None) -> torch.device:
    """``device`` if given (checked by :func:`check_device`), else the device of the
    model's first parameter or buffer (CPU for a module with neither)."""
    if device is not None:
        return check_device(device)
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def check_outputs(model: nn.Module, X, y, loss: str = "cross_entropy", name: str = "model"):
    """Run ``model`` on the first two samples of ``X`` and check its output against ``y``.

    Returns whether ``X`` must be fed as integers: integer ``X`` is cast to the model's
    floating dtype, unless the model only accepts integers (e.g. token indices for an
    ``nn.Embedding``), in which case it is passed as ``torch.long``.

    The forward pass runs in eval mode (no dropout draw, no BatchNorm update) and every
    submodule's mode is restored. Raises ``ValueError`` when the model cannot process
    ``X`` (wrong input size), does not return ``(n_samples, n_outputs)``, or when ``y``
    does not fit the outputs: class labels outside ``0..n_classes-1`` for
    ``"cross_entropy"``, a different number of targets per sample for ``"mse"``.
    """
    modes = [(m, m.training) for m in model.modules()]
    ref = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()),
               None)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    device = model_device(model)
    head = X[:2] if torch.is_tensor(X) else np.array(X[:2])  # a copy: X may be read-only
    head = torch.as_tensor(head)
    integer = not (head.is_floating_point() or head.is_complex() or head.dtype == torch.bool)
    errors = (RuntimeError, ValueError, TypeError, IndexError)
    integer_input = False
    model.eval()
    try:
        try:
            out = model(head.to(device=device, dtype=dtype))
        except errors as exc:
            if not integer:
                raise
            try:  # integer X for a model that only takes integers (nn.Embedding)
                out, integer_input = model(head.to(device=device, dtype=torch.long)), True
            except errors as exc_long:
                about_indices = "indices" in str(exc) or "Long" in str(exc)
                raise (exc_long if about_indices else exc) from None
    except errors as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{name} could not process X with sample shape {tuple(X.shape[1:])} ({msg}); "
            "make the model's input size (e.g. in_features) match X.shape[1:]."
        ) from None
    finally:
        for m, mode in modes:
            m.training = mode
    if not torch.is_tensor(out) or out.dim() != 2:
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(
            f"{name} must return a tensor of shape (n_samples, n_outputs), got {shape}; "
            "flatten its output or end it with an nn.Linear layer."
        )
    n_out = out.shape[1]
    if loss == "cross_entropy":
        yv = y.detach().cpu().numpy() if torch.is_tensor(y) else np.asarray(y)
        if yv.ndim != 1:
            raise ValueError(
                f"loss='cross_entropy' needs y of shape (n_samples,) with class indices, got "
                f"shape {tuple(yv.shape)}; use loss='mse' for regression targets."
            )
        if yv.dtype == np.bool_ or not np.issubdtype(yv.dtype, np.number) or (
                np.issubdtype(yv.dtype, np.floating) and not (yv == np.round(yv)).all()):
            raise ValueError(
                "loss='cross_entropy' needs integer class labels in y, got non-integer "
                "values; use loss='mse' for regression targets."
            )
        lo, hi = int(yv.min()), int(yv.max())
        if lo < 0 or hi >= n_out:
            raise ValueError(
                f"y has labels in [{lo}, {hi}] but {name} returns {n_out} logits, so labels "
                f"must lie in 0..{n_out - 1}; encode them with "
                "sklearn.preprocessing.LabelEncoder or give the model more outputs."
            )
    elif loss == "mse":
        per_sample = int(np.prod(tuple(y.shape[1:]))) if y.ndim > 1 else 1
        if per_sample != n_out:
            hint = ""
            if per_sample == 1 and n_out > 1:
                hint = (" For classification give y as integer class labels or pass "
                        "loss='cross_entropy' (floating y is taken as a regression target).")
            raise ValueError(
                f"loss='mse' needs {n_out} target(s) per sample to match the model's "
                f"{n_out} outputs, but y has shape {tuple(y.shape)}.{hint}"
            )
    return integer_input


#: Layers whose output is random in training mode (dropout of every kind, randomized ReLU).
_RANDOM_LAYERS = (nn.modules.dropout._DropoutNd, nn.RReLU)


def _updates_buffers(m: nn.Module) -> bool:
    """Whether calling ``m`` in training mode updates its buffers: normalization with
    running statistics, spectral normalization's power iteration (either API)."""
    if isinstance(m, nn.modules.batchnorm._NormBase):
        return m.track_running_stats
    if isinstance(m, _SpectralNorm):  # torch.nn.utils.parametrizations.spectral_norm
        return True
    return any(isinstance(h, _SpectralNormHook)  # torch.nn.utils.spectral_norm
               for h in m._forward_pre_hooks.values())


def mode_dependent(module: nn.Module) -> list[str]:
    """Names of the submodules of ``module`` in training mode whose output is random, or
    which update their own buffers, when called.

    Dropout of every kind (``nn.Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``, ...,
    ``nn.MultiheadAttention``'s own ``dropout``) and ``nn.RReLU`` draw random numbers;
    BatchNorm and InstanceNorm with running statistics update them (and BatchNorm
    normalizes with the batch's statistics); spectral normalization runs a
    power-iteration step. The curvature of such a call is not one
    function's curvature. ``""`` names ``module`` itself. A custom layer that behaves
    differently in training mode is not recognized: call ``model.eval()`` for it.
    """
    return [name for name, m in module.named_modules()
            if m.training and (isinstance(m, _RANDOM_LAYERS) or _updates_buffers(m)
                               or isinstance(m, nn.MultiheadAttention) and m.dropout > 0)]


def deterministic(net: nn.Module, original: nn.Module) -> nn.Module:
    """``net`` with every layer listed by :func:`mode_dependent` in eval mode.

    ``torch.func`` transforms can neither draw dropout masks nor update running statistics,
    and the curvature of a random function is not defined; the engine's ``prepare_model``
    has already warned. ``net`` is copied first when it is the caller's ``original``
    module, so the caller's modes and buffers are never changed.
    """
    names = mode_dependent(net)
    if not names:
        return net
    if net is original:
        import copy

        net = copy.deepcopy(net)
    for name in names:
        net.get_submodule(name).eval()
    return net
