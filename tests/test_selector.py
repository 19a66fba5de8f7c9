"""GoldilocksSelector: picking the initialization by the probe's criterion, alone, in
pipelines and in searches."""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import digits_subset, small_net
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from goldisk import (
    CurvatureProbe,
    GoldilocksRegressor,
    GoldilocksSelector,
    InitScaler,
)
from goldisk._rng import check_random_state
from goldisk.callbacks import RadiusTracker
from goldisk.models import MLP


@pytest.fixture(scope="module")
def digits():
    return digits_subset()


# ----------------------------------------------------------------------------- selector
@pytest.mark.parametrize("criterion", ["trace_ratio", "loss", "g_dominance"])
def test_selector_choice_and_initialization(digits, criterion):
    X, y = digits
    net = small_net(callbacks=[("radius", RadiusTracker())])
    probe = CurvatureProbe(dim=5, n_subspaces=1, max_samples=100, random_state=0)
    sel = GoldilocksSelector(net, n_candidates=3, criterion=criterion, probe=probe,
                             random_state=0).fit(X, y)
    table = sel.candidates_
    assert len(table) == 3 and {"seed", "score", "trace_ratio", "g_trace"} <= set(table)
    np.testing.assert_array_equal(table["score"], table[criterion])
    best = table["score"].idxmin() if criterion == "loss" else table["score"].idxmax()
    assert sel.best_index_ == best and sel.best_seed_ == table.loc[best, "seed"]
    # The candidate, re-initialized from its seed, reproduces its row of the table ...
    cand = clone(net).set_params(random_state=sel.best_seed_, max_epochs=0).fit(X, y)
    row = probe.measure(cand, X, y).iloc[0]
    assert row["trace_ratio"] == pytest.approx(table.loc[best, "trace_ratio"], rel=1e-12)
    # ... and the fitted model started from exactly those parameters.
    start = dict(sel.best_estimator_.callbacks_)["radius"].initial_
    torch.testing.assert_close(start, torch.nn.utils.parameters_to_vector(
        cand.module_.parameters()), rtol=0, atol=0)
    assert len(sel.best_estimator_.history) == 1
    assert sel.score(X, y) == sel.best_estimator_.score(X, y)
    np.testing.assert_array_equal(sel.classes_, np.arange(10))
    assert sel.predict_proba(X[:3]).shape == (3, 10)


def test_selector_minimizes_lambda_max_like_its_claim(digits):
    """``criterion="lambda_max"`` picks the flattest candidate (lower claimed better), the
    same one as ``InitStatisticCriterion("lambda_max")`` on the same samples."""
    from goldisk.curvature import top_eigenvalues
    from goldisk.estimators import InitStatisticCriterion

    X, y = digits
    X, y = X[:150], y[:150]
    net = small_net()
    probe = CurvatureProbe(dim=3, n_subspaces=1, max_samples=None, sharpness=True,
                           random_state=0)
    sel = GoldilocksSelector(net, n_candidates=3, criterion="lambda_max", probe=probe,
                             refit=False, random_state=0).fit(X, y)
    table = sel.candidates_
    assert sel.best_index_ == int(table["lambda_max"].idxmin())
    assert table["lambda_max"].nunique() == 3  # a real choice among three values
    # the column is the Hessian's lambda_max of the initialized candidate
    best = clone(net).set_params(random_state=sel.best_seed_, max_epochs=0).fit(X, y)
    Xt, yt = best._prepare_xy(X, y)
    lam = top_eigenvalues(best.module_, Xt, yt, 1, random_state=0)[0]
    assert table.loc[sel.best_index_, "lambda_max"] == pytest.approx(lam, rel=1e-6)
    signed = GoldilocksSelector(net, n_candidates=3, random_state=0, refit=False,
                                criterion=InitStatisticCriterion("lambda_max",
                                                                 max_samples=None)).fit(X, y)
    assert signed.best_seed_ == sel.best_seed_


def test_selector_reproducible_callable_and_regressor(digits):
    X, y = digits
    make = lambda: GoldilocksSelector(small_net(), n_candidates=2,  # noqa: E731
                                      probe=CurvatureProbe(dim=4, n_subspaces=1), random_state=5)
    a, b = make().fit(X, y), make().fit(X, y)
    pd.testing.assert_frame_equal(a.candidates_, b.candidates_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.predict(X), a.predict(X))
    assert clone(a).get_params()["probe__dim"] == 4
    sel = GoldilocksSelector(small_net(), n_candidates=2, criterion=lambda e, X, y: e.score(X, y),
                             probe=CurvatureProbe(dim=4, n_subspaces=1), random_state=0).fit(X, y)
    assert sel.best_index_ == sel.candidates_["score"].idxmax()
    reg = GoldilocksRegressor(MLP, module__hidden=(8,), max_epochs=1, random_state=0)
    rsel = GoldilocksSelector(reg, n_candidates=2, criterion="loss", random_state=0)
    rsel.fit(X, X[:, :4].sum(1))
    assert rsel.predict(X[:5]).shape == (5,) and not hasattr(rsel, "predict_proba")


@pytest.mark.parametrize("params, name", [
    ({"n_candidates": 0}, "n_candidates"), ({"criterion": "best"}, "criterion"),
    ({"probe": "probe"}, "probe"), ({"refit": "yes"}, "refit"),
    ({"random_state": "seed"}, "random_state"),
])
def test_selector_invalid_parameters(digits, params, name):
    X, y = digits
    with pytest.raises(ValueError, match=name):
        GoldilocksSelector(small_net(), **params).fit(X, y)
    with pytest.raises(ValueError, match="estimator"):
        GoldilocksSelector(StandardScaler()).fit(X, y)


def test_selector_in_pipeline_and_grid_search(digits):
    X, y = digits
    sel = GoldilocksSelector(small_net(), n_candidates=2,
                             probe=CurvatureProbe(dim=4, n_subspaces=1), random_state=0)
    pipe = make_pipeline(StandardScaler(), sel).fit(X, y)
    assert pipe.score(X, y) == pipe[-1].best_estimator_.score(pipe[0].transform(X), y)
    grid = GridSearchCV(sel, {"estimator__init_scaler": [InitScaler(0.5), InitScaler(2.0)]},
                        cv=2, error_score="raise").fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 2


def test_selector_score_std_is_the_spread_over_the_probes_subspaces(digits):
    X, y = digits
    probe = CurvatureProbe(dim=4, n_subspaces=3, random_state=1)
    sel = GoldilocksSelector(small_net(), n_candidates=2, probe=probe, random_state=0,
                             criterion="trace_ratio", refit=False).fit(X, y)
    for _, row in sel.candidates_.iterrows():
        cand = clone(small_net()).set_params(random_state=int(row["seed"]), max_epochs=0)
        table = probe.measure(cand.fit(X, y), X, y)
        assert row["score"] == pytest.approx(table["trace_ratio"].mean(), rel=1e-12)
        assert row["score_std"] == pytest.approx(np.std(table["trace_ratio"], ddof=1),
                                                 rel=1e-12)
    # refit=False ranks only: nothing to predict with, as GridSearchCV(refit=False)
    assert not hasattr(sel, "predict") and not hasattr(sel, "score")
    with pytest.raises(AttributeError, match="refit=False"):
        sel.classes_
    for method in ("predict", "predict_proba", "score"):  # the message says why
        with pytest.raises(AttributeError, match="refit=False, so it only ranks"):
            getattr(sel, method)
    assert sel.n_features_in_ == X.shape[1]


def test_selector_n_jobs_gives_the_same_candidates(digits):
    X, y = digits
    kw = dict(n_candidates=3, probe=CurvatureProbe(dim=4, n_subspaces=2), random_state=5,
              refit=False)
    serial = GoldilocksSelector(small_net(), **kw).fit(X, y)
    parallel = GoldilocksSelector(small_net(), n_jobs=2, **kw).fit(X, y)
    pd.testing.assert_frame_equal(serial.candidates_, parallel.candidates_, rtol=1e-12)
    assert serial.best_seed_ == parallel.best_seed_
    with pytest.raises(ValueError, match="n_jobs must be None or a nonzero int"):
        GoldilocksSelector(small_net(), n_jobs=0).fit(X, y)


@pytest.mark.parametrize("state", [np.random.default_rng(3), np.random.RandomState(3)],
                         ids=["Generator", "RandomState"])
def test_selector_probe_generator_gives_every_candidate_the_same_subspaces(digits, state):
    # one seed is drawn from the probe's generator: serial and parallel runs agree, and
    # every candidate is measured in the same subspaces as an int seed would give
    X, y = digits
    kw = dict(n_candidates=3, random_state=5, refit=False)
    probe = CurvatureProbe(dim=4, n_subspaces=1, random_state=state)
    serial = GoldilocksSelector(small_net(), probe=probe, **kw).fit(X, y)
    threads = GoldilocksSelector(small_net(), probe=probe, n_jobs=2, **kw)
    with joblib.parallel_config(backend="threading"):
        threads.fit(X, y)
    pd.testing.assert_frame_equal(serial.candidates_, threads.candidates_)
    seed = int(check_random_state(clone(probe).random_state).integers(0, 2**31 - 1))
    fixed = GoldilocksSelector(small_net(), probe=clone(probe).set_params(random_state=seed),
                               **kw).fit(X, y)
    pd.testing.assert_frame_equal(serial.candidates_, fixed.candidates_)


def test_selector_keeps_the_feature_names_of_a_dataframe(digits):
    X, y = digits
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])])
    for refit in (False, True):
        sel = GoldilocksSelector(small_net(), n_candidates=2, refit=refit, random_state=0,
                                 probe=CurvatureProbe(dim=3, random_state=0)).fit(frame, y)
        np.testing.assert_array_equal(sel.feature_names_in_, frame.columns)
        assert not hasattr(sel.fit(X, y), "feature_names_in_")  # none left from the last fit
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        GoldilocksSelector(small_net(), n_candidates=2).fit(X, y, sample_weight=np.ones(len(y)))


def test_selector_default_probe_gives_a_score_spread_and_loss_is_the_default(digits):
    # the default probe measures two subspaces: score_std is the sample standard deviation
    # of the criterion over them, a finite number
    X, y = digits
    sel = GoldilocksSelector(small_net(), n_candidates=2, criterion="trace_ratio",
                             refit=False, random_state=0).fit(X, y)
    assert np.isfinite(sel.candidates_["score_std"]).all()
    assert (sel.candidates_["score_std"] > 0).all()
    # the default criterion (the study's best): the lowest loss at init is picked
    default = GoldilocksSelector(small_net(), n_candidates=3, refit=False,
                                 random_state=0).fit(X, y)
    assert default.criterion == "loss"
    losses = [CurvatureProbe(dim=20, n_subspaces=2, max_samples=256).measure(
        clone(small_net()).set_params(random_state=int(s), max_epochs=0).fit(X, y), X, y)
        ["loss"].mean() for s in default.candidates_["seed"]]
    assert default.best_index_ == int(np.argmin(losses))
