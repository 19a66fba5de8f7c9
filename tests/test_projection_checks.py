"""D, d, dtype and metric are checked once on make_projection's path (its entry), and once
by each public projection class's constructor."""

import collections

import numpy as np
import pytest
import torch

from goldisk.projections import (
    DenseProjection,
    FastfoodProjection,
    IdentityProjection,
    SparseProjection,
    _base,
    _dense,
    _factory,
    _fastfood,
    _identity,
    _sparse,
    make_projection,
)

CHECKS = ("_check_D", "_check_d", "_check_dtype", "_check_metric")
MODULES = (_factory, _dense, _sparse, _fastfood, _identity)


@pytest.fixture
def counted(monkeypatch):
    """Calls of the four argument checks, wherever a projection module calls them."""
    calls = collections.Counter()
    for check in CHECKS:
        original = getattr(_base, check)

        def wrapper(*args, _original=original, _name=check, **kw):
            calls[_name] += 1
            return _original(*args, **kw)

        for mod in MODULES:
            if hasattr(mod, check):
                monkeypatch.setattr(mod, check, wrapper)
    return calls


@pytest.mark.parametrize("kind", ["dense", "sparse", "sparse-li", "fastfood", "auto"])
def test_make_projection_checks_each_argument_once(counted, kind):
    P = make_projection(kind, 40, 3, random_state=0, metric=np.linspace(1, 2, 40))
    assert P.D == 40 and P.d == 3
    assert counted == {c: 1 for c in CHECKS}


def test_identity_checks_each_argument_once(counted):
    make_projection("identity", 7, 7)
    assert counted == {c: 1 for c in CHECKS}


@pytest.mark.parametrize("cls", [DenseProjection, SparseProjection, FastfoodProjection])
def test_public_constructors_check_their_arguments(counted, cls):
    cls(40, 3, generator=0, metric=np.ones(40))
    assert counted == {c: 1 for c in CHECKS}


def test_identity_constructor_checks_D_and_dtype(counted):
    IdentityProjection(5)
    assert counted == {"_check_D": 1, "_check_dtype": 1}


@pytest.mark.parametrize("kind, cls, extra", [
    ("dense", DenseProjection, {}),
    ("sparse", SparseProjection, {}),
    ("sparse-li", SparseProjection, {"density": "li"}),
    ("fastfood", FastfoodProjection, {}),
])
def test_unchecked_path_builds_what_the_constructor_builds(kind, cls, extra):
    """The factory's internal path gives the same map as the public constructor."""
    metric = np.linspace(0.5, 3.0, 50)
    P = make_projection(kind, 50, 4, random_state=3, metric=metric)
    Q = cls(50, 4, generator=3, metric=metric, **extra)
    torch.testing.assert_close(P.to_dense(), Q.to_dense(), rtol=1e-12, atol=1e-12)
    # an independent reference: unit-norm columns, as documented
    norms = np.linalg.norm(P.to_dense().numpy(), axis=0)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-10)


@pytest.mark.parametrize("args, message", [
    ((0, 1), r"D must be an int >= 1, got D=0"),
    ((5, 6), r"d must be an int in \[1, D=5\], got d=6"),
    ((5, 2.0), r"d must be an int in \[1, D=5\], got 2.0"),
])
def test_make_projection_still_names_the_argument(args, message):
    with pytest.raises(ValueError, match=message):
        make_projection("dense", *args)
    with pytest.raises(ValueError, match=r"dtype must be a floating torch.dtype"):
        make_projection("dense", 5, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"metric must be a 1-D array of length D=5"):
        make_projection("sparse", 5, 2, metric=np.ones(4))
