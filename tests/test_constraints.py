"""The parameter objects' declared constraints (goldisk/estimators/_constraints.py)."""

import numpy as np
import pytest
import torch

from goldisk import (
    CurvatureProbe,
    GoldilocksClassifier,
    GoldilocksSelector,
    InitScaler,
    SubspaceProjector,
)
from goldisk.estimators import _constraints as C
from goldisk.models import MLP

OBJECTS = [InitScaler(), SubspaceProjector(), CurvatureProbe(),
           GoldilocksSelector(GoldilocksClassifier(MLP))]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: type(o).__name__)
def test_every_parameter_is_declared_once(obj):
    """As scikit-learn's check_param_validation asks: one entry per parameter."""
    assert set(type(obj)._parameter_constraints) == set(obj.get_params(deep=False))


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: type(o).__name__)
def test_defaults_satisfy_the_table(obj):
    C.validate_params(obj, "p__")  # raises on any default that breaks its constraint


def _error(obj, prefix="", **context):
    with pytest.raises(ValueError) as info:
        C.validate_params(obj, prefix, **context)
    return str(info.value)


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), True, "1.0", None])
def test_positive_real_names_the_prefixed_key_and_the_fix(value):
    msg = _error(InitScaler(radius=value), "init_scaler__")
    assert msg == (f"init_scaler__radius must be a finite number > 0, got {value!r}; "
                   "e.g. init_scaler__radius=1.0.")


@pytest.mark.parametrize("value", [0.5, 2, np.float32(3.0)])
def test_positive_real_accepts_numbers(value):
    C.validate_params(InitScaler(temperature=value))


def test_one_of_lists_the_choices():
    msg = _error(InitScaler(mode="layer"), "init_scaler__")
    assert msg == "init_scaler__mode must be one of ['global', 'per_layer'], got 'layer'."


def test_dim_uses_D_from_the_context():
    C.validate_params(SubspaceProjector(dim=10), D=10)
    msg = _error(SubspaceProjector(dim=11), "subspace__", D=10)
    assert msg == ("subspace__dim must be an int >= 1 and <= D=10 (the number of "
                   "parameters), got subspace__dim=11.")


@pytest.mark.parametrize("name, value", [("n_subspaces", 0), ("batch_size", 1.0),
                                         ("max_samples", True)])
def test_int_range(name, value):
    assert _error(CurvatureProbe(**{name: value})) == \
        f"{name} must be an int >= 1, got {value!r}."


def test_int_range_none_only_where_declared():
    C.validate_params(CurvatureProbe(max_samples=None))
    assert "n_subspaces must be an int >= 1" in _error(CurvatureProbe(n_subspaces=None))


def test_dtype_accepts_names_and_torch_dtypes():
    for value in ("float32", "float64", torch.float32, torch.float64):
        C.validate_params(CurvatureProbe(dtype=value))
    assert _error(CurvatureProbe(dtype="float16")).startswith("dtype must be one of")


def test_flags_strict_and_lenient():
    sel = GoldilocksSelector(GoldilocksClassifier(MLP), refit=1)
    assert _error(sel) == "refit must be True or False, got 1."
    C.validate_params(GoldilocksSelector(GoldilocksClassifier(MLP), refit=np.bool_(False)))
    C.validate_params(CurvatureProbe(sharpness=1))  # the probe has always taken 1/0
    assert _error(CurvatureProbe(sharpness="no")) == \
        "sharpness must be True or False, got 'no'."


def test_selector_rows():
    net = GoldilocksClassifier(MLP)
    assert _error(GoldilocksSelector(net, n_jobs=0)) == \
        "n_jobs must be None or a nonzero int (-1: all cores), got 0."
    assert "probe must be None or a CurvatureProbe" in _error(
        GoldilocksSelector(net, probe=InitScaler()))
    assert _error(GoldilocksSelector(net, criterion="best")).startswith(
        "criterion must be a callable or one of [")
    C.validate_params(GoldilocksSelector(net, criterion=lambda *a: 0.0, n_jobs=-1))


def test_skip_leaves_a_parameter_to_the_caller():
    C.validate_params(CurvatureProbe(dim=0), skip=("dim",))
    assert "dim must be an int >= 1" in _error(CurvatureProbe(dim=0))


def test_validate_is_the_table():
    """Each object's _validate reports what validate_params reports (prefix included)."""
    bad = InitScaler(init="orthogonal")
    with pytest.raises(ValueError) as info:
        bad._validate("init_scaler__")
    assert str(info.value) == _error(bad, "init_scaler__")
