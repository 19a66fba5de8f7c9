"""CurvatureProbe against the engine and brute force, and as a scorer in model selection."""

import re

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import brute_force_gauss_newton, brute_force_hessian, digits_subset, small_net
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from goldisk import (
    CurvatureProbe,
    GoldilocksClassifier,
    GoldilocksRegressor,
    GoldilocksSelector,
    InitScaler,
    SubspaceProjector,
    hessian_statistics,
    subspace_hessian,
)
from goldisk._flat import ParamLayout
from goldisk.models import MLP


@pytest.fixture(scope="module")
def digits():
    return digits_subset()


def tiny_data(n=30, d=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, classes, n)


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


# ----------------------------------------------------------------------------- probe
def test_measure_columns_rows_and_determinism(digits):
    X, y = digits
    net = small_net(max_epochs=0).fit(X, y)
    probe = CurvatureProbe(dim=6, n_subspaces=2, max_samples=100, random_state=0)
    table = probe.measure(net, X, y)
    assert isinstance(table, pd.DataFrame) and len(table) == 2
    expected = {"trace", "frobenius", "trace_ratio", "frac_positive", "eig_min", "eig_max",
                "g_trace", "g_trace_ratio", "g_frac_positive", "h_trace", "h_frobenius",
                "g_dominance", "loss", "accuracy", "confidence", "entropy",
                "logit_grad_norm", "zero_logit_frac", "dim", "subspace"}
    assert expected <= set(table.columns)
    assert (table["dim"] == 6).all() and list(table["subspace"]) == [0, 1]
    pd.testing.assert_frame_equal(table, probe.measure(net, X, y))
    np.testing.assert_allclose(table["trace"], table["g_trace"] + table["h_trace"], rtol=1e-10)
    assert probe(net, X, y) == pytest.approx(table["trace_ratio"].mean(), rel=1e-12)
    loss_probe = clone(probe).set_params(statistic="loss")
    assert loss_probe(net, X, y) == pytest.approx(-table["loss"].mean(), rel=1e-12)


def test_probe_equals_engine_and_brute_force():
    X, y = tiny_data()
    net = GoldilocksClassifier(MLP, module__hidden=(4,), module__activation="tanh",
                               dtype="float64", max_epochs=0, random_state=1).fit(X, y)
    module = net.module_
    D = ParamLayout(module).D
    probe = CurvatureProbe(dim=5, n_subspaces=2, max_samples=None, random_state=3)
    table = probe.measure(net, X, y)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    H_full = brute_force_hessian(module, Xt, yt)
    G_full = brute_force_gauss_newton(module, Xt, yt)
    for i, P in enumerate(probe.make_projections(D)):
        Pm = P.to_dense()
        H_bf, G_bf = Pm.T @ H_full @ Pm, Pm.T @ G_full @ Pm
        res = subspace_hessian(module, X, y, P)  # the engine, same projection
        assert rel_err(res.H, H_bf) <= 1e-8 and rel_err(res.G, G_bf) <= 1e-8
        for stats, ref in ((hessian_statistics(res.H), hessian_statistics(H_bf)),
                           (hessian_statistics(res.G, "g_"), hessian_statistics(G_bf, "g_"))):
            for key, value in stats.items():
                assert table.loc[i, key] == pytest.approx(value, rel=1e-12, abs=1e-14)
                assert table.loc[i, key] == pytest.approx(ref[key], rel=1e-8, abs=1e-12)


def test_probe_on_the_users_own_matrix_is_that_subspace():
    """A D x d matrix as ``projection``: the one subspace measured, columns as given (not
    normalized), against M^T H M from the brute-force full Hessian."""
    X, y = tiny_data()
    net = GoldilocksClassifier(MLP, module__hidden=(4,), dtype="float64", max_epochs=0,
                               random_state=0).fit(X, y)
    D = ParamLayout(net.module_).D
    M = np.random.default_rng(5).normal(size=(D, 3)) * 2.0  # columns of norm ~ 2 sqrt(D)
    table = CurvatureProbe(projection=M, max_samples=None).measure(net, X, y)
    H = brute_force_hessian(net.module_, torch.as_tensor(X), torch.as_tensor(y))
    Mt = torch.as_tensor(M)
    ref = hessian_statistics(Mt.T @ H @ Mt)
    assert len(table) == 1 and table.loc[0, "dim"] == 3
    for key, value in ref.items():
        assert table.loc[0, key] == pytest.approx(value, rel=1e-8, abs=1e-12)
    with pytest.raises(ValueError, match=r"projection has shape \(.*\)"):
        CurvatureProbe(projection=M[:-1]).measure(net, X, y)


def test_full_space_probe_is_exact():
    X, y = tiny_data()
    net = GoldilocksClassifier(MLP, module__hidden=(4,), dtype="float64", max_epochs=0,
                               random_state=0).fit(X, y)
    table = CurvatureProbe(dim=None, max_samples=None).measure(net, X, y)
    H = brute_force_hessian(net.module_, torch.as_tensor(X), torch.as_tensor(y))
    ref = hessian_statistics(H)
    assert len(table) == 1 and table.loc[0, "dim"] == H.shape[0]
    for key, value in ref.items():
        assert table.loc[0, key] == pytest.approx(value, rel=1e-8, abs=1e-12)


def test_measure_resolves_pipelines_subspaces_selectors_and_modules(digits):
    X, y = digits
    net = small_net(subspace=SubspaceProjector(dim=10), max_epochs=2)
    pipe = make_pipeline(StandardScaler(), net).fit(X, y)
    probe = CurvatureProbe(dim=4, n_subspaces=1, max_samples=80, random_state=0)
    by_pipe = probe.measure(pipe, X, y)
    module = pipe[-1].module_.materialize()  # full space around w(theta)
    by_module = probe.measure(module, pipe[0].transform(X).astype(np.float32), y)
    pd.testing.assert_frame_equal(by_pipe, by_module)
    sel = GoldilocksSelector(small_net(), n_candidates=2, probe=probe, random_state=0)
    sel.fit(X, y)
    pd.testing.assert_frame_equal(probe.measure(sel, X, y),
                                  probe.measure(sel.best_estimator_, X, y))


def test_measure_plain_skorch_nets_nll_equals_cross_entropy():
    X, y = tiny_data()
    X = X.astype(np.float32)
    torch.manual_seed(0)
    logits = MLP(3, (5,), 3)
    ce = NeuralNetClassifier(logits, criterion=torch.nn.CrossEntropyLoss, max_epochs=0,
                             train_split=None).fit(X, y)
    nll = NeuralNetClassifier(torch.nn.Sequential(logits, torch.nn.Softmax(dim=-1)),
                              max_epochs=0, train_split=None).fit(X, y)  # NLLLoss on probs
    probe = CurvatureProbe(dim=4, n_subspaces=1, random_state=0)
    a, b = probe.measure(ce, X, y), probe.measure(nll, X, y)
    for key in ("trace", "frobenius", "g_trace", "loss", "accuracy"):
        assert a.loc[0, key] == pytest.approx(b.loc[0, key], rel=1e-6)


def test_g_dominance_is_g_trace_over_the_h_terms_absolute_trace(digits):
    X, y = digits
    torch.manual_seed(0)  # nn.Linear's default init; the test's choice
    net = MLP(64, (16,), 10).double()
    table = CurvatureProbe(dim=6, n_subspaces=3, random_state=0).measure(net, X, y)
    assert (table["h_trace"] < 0).any() and (table["h_trace"] > 0).any()  # both signs
    np.testing.assert_allclose(table["g_dominance"], table["g_trace"] / table["h_trace"].abs(),
                               rtol=1e-12)


def test_measure_regressor_uses_mse():
    X, _ = tiny_data()
    y = X.sum(1)
    reg = GoldilocksRegressor(MLP, module__hidden=(4,), max_epochs=0, random_state=0)
    table = CurvatureProbe(dim=3, n_subspaces=1, random_state=0).measure(reg.fit(X, y), X, y)
    assert "accuracy" not in table and table.loc[0, "g_trace"] > 0
    mse = float(np.mean((reg.predict(X).astype(np.float64).ravel() - y) ** 2))
    assert table.loc[0, "loss"] == pytest.approx(mse, rel=1e-5)
    row = table.loc[0]
    assert row["g_dominance"] == pytest.approx(row["g_trace"] / abs(row["h_trace"]), rel=1e-12)
    # the full-space Hessian and G of the mean squared error, by brute force
    full = CurvatureProbe(dim=None, max_samples=None).measure(reg, X, y)
    net = reg.module_.double()
    # the probe sees the data as the net does: rounded to its float32, then float64
    Xt = torch.as_tensor(X.astype(np.float32)).double()
    yt = torch.as_tensor(y.astype(np.float32)).double()
    for prefix, M in (("", brute_force_hessian(net, Xt, yt, "mse")),
                      ("g_", brute_force_gauss_newton(net, Xt, yt, "mse"))):
        for key, value in hessian_statistics(M, prefix).items():
            assert full.loc[0, key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    with pytest.raises(ValueError, match="statistic=.accuracy."):
        CurvatureProbe(dim=3, n_subspaces=1, statistic="accuracy")(reg, X, y)


@pytest.mark.parametrize("params, name", [
    ({"dim": 0}, "dim"), ({"dim": 10_000}, "dim"), ({"dim": 2.5}, "dim"),
    ({"kind": "torus"}, "kind"), ({"projection": "magic"}, "projection"),
    ({"statistic": "nope"}, "statistic"), ({"loss": "hinge"}, "loss"), ({"n_subspaces": 0},
                                                                 "n_subspaces"),
    ({"dtype": "float16"}, "dtype"), ({"gauss_newton": False, "statistic": "g_trace"}, "statistic"),
    ({"random_state": -3}, "random_state"), ({"random_state": "x"}, "random_state"),
])
def test_probe_invalid_parameters(params, name):
    X, y = tiny_data()
    with pytest.raises(ValueError, match=name):
        CurvatureProbe(**params).measure(MLP(3, (10,), 3), X, y)  # D = 73


def test_probe_full_space_refused_for_large_D():
    X, y = tiny_data(d=784)
    with pytest.raises(ValueError, match="dim=None"):
        CurvatureProbe(dim=None).measure(MLP(784, (30,), 3), X, y)  # D = 23,643


# ----------------------------------------------------------------------------- model selection
def test_grid_and_randomized_search_with_probe_scoring(digits):
    X, y = digits
    net = small_net(init_scaler=InitScaler(radius=1.0), subspace=SubspaceProjector(dim=10))
    pipe = make_pipeline(StandardScaler(), net)
    scoring = {"acc": "accuracy",
               "curv": CurvatureProbe(dim=4, n_subspaces=1, max_samples=60, random_state=0)}
    grid = GridSearchCV(pipe, {"goldilocksclassifier__init_scaler__radius": [0.5, 2.0],
                               "goldilocksclassifier__subspace__dim": [5, 20],
                               "goldilocksclassifier__subspace__kind": ["hyperplane",
                                                                       "hypersphere"]},
                        scoring=scoring, refit="acc", cv=2, error_score="raise").fit(X, y)
    results = pd.DataFrame(grid.cv_results_)
    assert len(results) == 8 and results["mean_test_curv"].notna().all()
    assert {"param_goldilocksclassifier__subspace__kind", "rank_test_acc"} <= set(results)
    best = grid.best_estimator_[-1]
    assert best.subspace.dim == grid.best_params_["goldilocksclassifier__subspace__dim"]
    assert best.module_.d == best.subspace.dim
    assert net.subspace.dim == 10  # the original was cloned, never modified
    rand = RandomizedSearchCV(pipe, {"goldilocksclassifier__init_scaler__radius":
                                     np.logspace(-1, 1, 5)}, n_iter=2, scoring=scoring,
                              refit="curv", cv=2, random_state=0, error_score="raise")
    rand.fit(X, y)
    assert pd.DataFrame(rand.cv_results_)["mean_test_curv"].notna().all()


def test_cross_validate_in_two_processes(digits):
    X, y = digits
    probe = CurvatureProbe(dim=4, n_subspaces=1, max_samples=60, random_state=0)
    cv = cross_validate(small_net(subspace=SubspaceProjector(dim=10)), X, y, cv=2, n_jobs=2,
                        scoring={"acc": "accuracy", "curv": probe}, error_score="raise")
    serial = cross_validate(small_net(subspace=SubspaceProjector(dim=10)), X, y, cv=2,
                            scoring={"acc": "accuracy", "curv": probe}, error_score="raise")
    np.testing.assert_allclose(cv["test_curv"], serial["test_curv"], rtol=1e-6)
    np.testing.assert_array_equal(cv["test_acc"], serial["test_acc"])


def test_measure_on_an_initialized_net_equals_max_epochs_zero(digits):
    # initialize() without fit: the classes come from y; the same seed gives the init
    # that fit(max_epochs=0) builds, so the tables agree exactly
    X, y = digits
    probe = CurvatureProbe(dim=4, n_subspaces=2, random_state=0)
    net = small_net(module__in_features=64, module__out_features=10).initialize()
    table = probe.measure(net, X.astype(np.float32), y)
    ref = probe.measure(small_net(max_epochs=0).fit(X, y), X, y)
    pd.testing.assert_frame_equal(table, ref)
    assert not hasattr(net, "classes_inferred_")  # measuring stores nothing


@pytest.mark.parametrize("obj, where", [
    (InitScaler(radius=2.0), r"GoldilocksClassifier\(\.\.\., init_scaler=InitScaler\("
                             r"radius=2\.0\)\).*goldilocksclassifier__init_scaler__radius"),
    (SubspaceProjector(dim=5), r"subspace=SubspaceProjector\(dim=5\)\).*"
                               r"goldilocksclassifier__subspace__dim"),
    (CurvatureProbe(dim=3), r"scoring=.*probe=CurvatureProbe\(dim=3\)"),
])
def test_parameter_objects_as_pipeline_steps_say_where_they_go(digits, obj, where):
    X, y = digits
    for pipe in (make_pipeline(StandardScaler(), obj, small_net()),  # intermediate step
                 make_pipeline(StandardScaler(), obj)):  # last step
        with pytest.raises(TypeError, match="parameter object, not a Pipeline step") as err:
            pipe.fit(X, y)
        assert re.search(where, str(err.value)), str(err.value)
    # the kernel pattern works: the same object as a parameter, searched by its grid key
    if isinstance(obj, InitScaler):
        pipe = make_pipeline(StandardScaler(), small_net(init_scaler=obj))
        grid = GridSearchCV(pipe, {"goldilocksclassifier__init_scaler__radius": [0.5, 1.0]},
                            cv=2).fit(X, y)
        assert grid.best_params_["goldilocksclassifier__init_scaler__radius"] in (0.5, 1.0)
