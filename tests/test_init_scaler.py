"""InitScaler on its way from a grid-search key to the weights: the radius is validated
once, at the net's boundary, and then reaches the weights unchanged."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import goldisk._radius as radius_mod
import goldisk.estimators._constraints as constraints_mod
from goldisk import GoldilocksClassifier, InitScaler, radius, reference_radius
from goldisk.models import MLP


@pytest.fixture
def counted(monkeypatch):
    """Every check of a radius (the scaler's and rescale_'s), by parameter name."""
    calls = []
    check_positive, check_real = constraints_mod.PositiveReal.check, radius_mod.check_real

    def positive(self, value, name, **context):
        calls.append(name)
        return check_positive(self, value, name, **context)

    def real(value, name, **kw):
        calls.append(name)
        return check_real(value, name, **kw)

    monkeypatch.setattr(constraints_mod.PositiveReal, "check", positive)
    monkeypatch.setattr(radius_mod, "check_real", real)
    return calls


def _data(n=60):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)).astype(np.float32), np.arange(n) % 3


def test_grid_search_radius_is_checked_once_per_fit(counted):
    X, y = _data()
    net = GoldilocksClassifier(MLP, module__hidden=(8,), init_scaler=InitScaler(radius=1.0),
                               max_epochs=0, random_state=0)
    grid = GridSearchCV(make_pipeline(StandardScaler(), net),
                        {"goldilocksclassifier__init_scaler__radius": [2.5]}, cv=2,
                        refit=False, error_score="raise").fit(X, y)
    assert grid.cv_results_["params"] == [{"goldilocksclassifier__init_scaler__radius": 2.5}]
    radius_checks = [c for c in counted if c.endswith("radius") or c == "target"]
    assert radius_checks == ["init_scaler__radius"] * 2  # two folds, one check each


def test_the_checked_radius_reaches_the_weights():
    X, y = _data()
    net = GoldilocksClassifier(MLP, module__hidden=(8,), max_epochs=0, random_state=0,
                               init_scaler=InitScaler(radius=1.0)).fit(X, y)
    net.set_params(init_scaler__radius=2.5)  # re-initializes: checked again, once
    r_ref = reference_radius(net.module_, "xavier")
    assert radius(net.module_) == pytest.approx(2.5 * r_ref, rel=1e-6)
    with pytest.raises(ValueError, match=r"init_scaler__radius must be a finite number > 0"):
        net.set_params(init_scaler__radius=-1.0)


def test_public_apply_and_rescale_still_check_their_arguments():
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        InitScaler(radius=0.0).apply_(MLP(5, (4,), 3))
    with pytest.raises(ValueError, match="target radius must be finite and > 0"):
        radius_mod.rescale_(MLP(5, (4,), 3), -2.0)
    with pytest.raises(ValueError, match="mode must be 'global' or 'per_layer'"):
        radius_mod.rescale_(MLP(5, (4,), 3), 2.0, mode="layer")
