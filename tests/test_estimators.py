"""GoldilocksClassifier / GoldilocksRegressor with InitScaler and SubspaceProjector."""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from goldisk import (
    GoldilocksClassifier,
    GoldilocksRegressor,
    InitScaler,
    SoftmaxTemperature,
    SubspaceModule,
    SubspaceProjector,
    layer_reference_radii,
    radius,
    reference_radius,
)
from goldisk._flat import parameter_vector
from goldisk.estimators import layer_metric
from goldisk.models import MLP


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:200] / 16.0, y[:200]


def net_(**kw):
    params = dict(module__hidden=(16,), max_epochs=2, lr=1e-2, random_state=0)
    params.update(kw)
    return GoldilocksClassifier(MLP, **params)


def test_fit_predict_float64_input_and_string_labels(digits):
    X, y = digits
    assert X.dtype == np.float64
    net = net_().fit(X, y)
    proba = net.predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (200, 10)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert net.module_.net[0].in_features == 64 and net.module_.net[-1].out_features == 10
    assert net.n_features_in_ == 64 and len(net.history) == 2
    labels = np.array(["zero", "one", "two"])[y % 3]
    pred = net_().fit(X, labels).predict(X)
    assert set(pred) <= set(labels)
    np.testing.assert_array_equal(net_().fit(X, labels).classes_, np.unique(labels))


def test_same_random_state_same_predictions_and_global_rng_untouched(digits):
    X, y = digits
    kw = dict(init_scaler=InitScaler(radius=2.0), subspace=SubspaceProjector(dim=20))
    cpu, np_state = torch.random.get_rng_state(), np.random.get_state()  # noqa: NPY002
    a = net_(**kw).fit(X, y)
    pa = a.predict_proba(X)
    assert torch.equal(cpu, torch.random.get_rng_state())
    assert np.array_equal(np_state[1], np.random.get_state()[1])  # noqa: NPY002
    torch.manual_seed(123)  # the global RNG's state must not matter either
    np.testing.assert_array_equal(pa, net_(**kw).fit(X, y).predict_proba(X))
    np.testing.assert_array_equal(pa, clone(a).fit(X, y).predict_proba(X))
    assert not np.array_equal(pa, net_(random_state=1, **kw).fit(X, y).predict_proba(X))


def test_max_epochs_zero_evaluates_at_initialization(digits):
    X, y = digits
    net = net_(max_epochs=0, init_scaler=InitScaler(radius=3.0, reference="he")).fit(X, y)
    assert len(net.history) == 0 and net.predict(X[:4]).shape == (4,)
    assert radius(net.module_) == pytest.approx(3.0 * reference_radius(net.module_, "he"))


@pytest.mark.parametrize("reference", ["xavier", "he", "lecun", "default"])
def test_init_scaler_radius_and_modes(digits, reference):
    X, y = digits
    net = net_(max_epochs=0, init_scaler=InitScaler(0.5, reference=reference)).fit(X, y)
    assert radius(net.module_) == pytest.approx(0.5 * reference_radius(net.module_, reference))
    per = net_(max_epochs=0, init_scaler=InitScaler(2.0, reference, mode="per_layer"))
    module = per.fit(X, y).module_
    for name, ref in layer_reference_radii(module, reference).items():
        layer = module.get_submodule(name)
        assert radius(layer) == pytest.approx(2.0 * ref, rel=1e-5)


@given(rho=st.floats(1e-3, 1e3), reference=st.sampled_from(["xavier", "he", "lecun", "default"]),
       mode=st.sampled_from(["global", "per_layer"]), seed=st.integers(0, 2**31))
def test_init_scaler_hits_the_target_radius(rho, reference, mode, seed):
    module = InitScaler(rho, reference, mode=mode).apply_(MLP(5, (7, 3), 4), generator=seed)
    assert radius(module) == pytest.approx(rho * reference_radius(module, reference), rel=1e-5)


def test_dtype_float64_starts_from_the_same_point(digits):
    X, y = digits
    kw = dict(max_epochs=0, init_scaler=InitScaler(2.0), subspace=SubspaceProjector(dim=5))
    w32 = net_(**kw).fit(X, y).module_.w0
    w64 = net_(dtype="float64", **kw).fit(X, y).module_.w0
    assert w64.dtype == torch.float64
    torch.testing.assert_close(w64, w32.double())


def test_init_scaler_current_keep_and_temperature(digits):
    X, y = digits
    plain = net_(max_epochs=0).fit(X, y).module_  # PyTorch default init, seeded
    cur = net_(max_epochs=0, init_scaler=InitScaler(3.0, reference="current")).fit(X, y)
    torch.testing.assert_close(parameter_vector(cur.module_), 3 * parameter_vector(plain))
    keep = net_(max_epochs=0, init_scaler=InitScaler(2.0, init="keep")).fit(X, y).module_
    cos = torch.nn.functional.cosine_similarity(parameter_vector(keep),
                                                parameter_vector(plain), dim=0)
    assert float(cos) == pytest.approx(1.0, abs=1e-6)
    hot = net_(max_epochs=0, init_scaler=InitScaler(temperature=4.0)).fit(X, y)
    assert isinstance(hot.module_, SoftmaxTemperature)
    assert float(hot.module_.temperature) == 4.0


def test_subspace_training_moves_only_theta(digits):
    X, y = digits
    net = net_(subspace=SubspaceProjector(dim=15, projection="sparse")).fit(X, y)
    module = net.module_
    assert isinstance(module, SubspaceModule) and module.d == 15
    assert [n for n, _ in module.named_parameters()] == ["theta"]
    assert float(module.theta.detach().norm()) > 0
    P = net.projection_matrix()
    assert P.shape == (module.D, 15)
    np.testing.assert_allclose(np.linalg.norm(P, axis=0), 1, rtol=1e-5)
    delta = (module.point() - module.w0).detach().double().numpy()
    np.testing.assert_allclose(delta, P.astype(np.float64) @ module.theta.detach().double()
                               .numpy(), atol=1e-6)


def test_hypersphere_keeps_radius_and_full_sphere(digits):
    X, y = digits
    for dim in (10, None):
        net = net_(init_scaler=InitScaler(2.0), max_epochs=3, lr=0.1,
                   subspace=SubspaceProjector(dim=dim, kind="hypersphere")).fit(X, y)
        r_ref = reference_radius(net.module_.base, "xavier")
        assert net.module_.radius() == pytest.approx(2.0 * r_ref, rel=1e-5)
    assert net.module_.d == net.module_.D  # dim=None: the whole sphere
    plain = net_(subspace=SubspaceProjector(dim=None)).fit(X, y)
    assert not isinstance(plain.module_, SubspaceModule)


def test_per_layer_metric_and_fixed_projection(digits):
    X, y = digits
    module = MLP(64, (16,), 10)
    eta = layer_metric(module, "xavier")
    assert eta[0] == pytest.approx(np.sqrt(2 / 80)) and eta[-1] == pytest.approx(np.sqrt(2 / 26))
    sub = SubspaceProjector(dim=8, metric="per_layer", random_state=4)
    a = net_(subspace=sub, max_epochs=0).fit(X, y)
    b = net_(subspace=sub, max_epochs=0, random_state=9).fit(X, y)
    np.testing.assert_array_equal(a.projection_matrix(), b.projection_matrix())
    np.testing.assert_allclose(a.projection_matrix(), sub.to_dense(module), rtol=1e-6)


def test_nested_params_get_set_clone_and_reinitialize(digits):
    X, y = digits
    net = net_(init_scaler=InitScaler(1.0), subspace=SubspaceProjector(dim=10))
    params = net.get_params(deep=True)
    assert params["init_scaler__radius"] == 1.0 and params["subspace__dim"] == 10
    assert "_params_to_validate" not in params
    net.set_params(init_scaler__radius=2.0, subspace__dim=20, subspace__kind="hypersphere")
    assert net.init_scaler.radius == 2.0 and net.subspace.get_params()["dim"] == 20
    twin = clone(net)
    assert twin.init_scaler is not net.init_scaler
    assert twin.get_params()["init_scaler__radius"] == 2.0
    assert twin.get_params()["subspace__kind"] == "hypersphere"
    fitted = net_(max_epochs=0, init_scaler=InitScaler(1.0)).fit(X, y)
    w1 = parameter_vector(fitted.module_).clone()
    fitted.set_params(init_scaler__radius=4.0)  # re-initializes, same seeds
    torch.testing.assert_close(parameter_vector(fitted.module_), 4 * w1)
    assert fitted.optimizer_.param_groups[0]["params"][0] is next(fitted.module_.parameters())
    with pytest.raises(ValueError, match="subspace is None"):
        net_().set_params(subspace__dim=3)
    with pytest.raises(ValueError, match="init_scaler__radius was passed to __init__"):
        net_(init_scaler__radius=2.0).fit(X, y)


def test_pickle_round_trip(digits):
    X, y = digits
    net = net_(init_scaler=InitScaler(1.5, temperature=2.0), subspace=SubspaceProjector(dim=12))
    net.fit(X, y)
    copy = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(copy.predict_proba(X), net.predict_proba(X))
    copy.partial_fit(X, y)  # still trainable, continues from where it was
    assert len(copy.history) == 4
    unfitted = pickle.loads(pickle.dumps(net_(subspace=SubspaceProjector(dim=12))))
    assert unfitted.get_params()["subspace__dim"] == 12


def test_pipeline_with_standard_scaler(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), net_(max_epochs=3, init_scaler=InitScaler(1.0)))
    assert pipe.fit(X, y).score(X, y) > 0.3


def test_regressor_shapes_and_outputs(digits):
    X, _ = digits
    y1 = X[:, :5].sum(1)
    y2 = np.stack([y1, -y1], axis=1)
    reg = GoldilocksRegressor(MLP, module__hidden=(8,), max_epochs=2, random_state=0,
                              init_scaler=InitScaler(1.0), subspace=SubspaceProjector(dim=10))
    p1 = reg.fit(X, y1).predict(X)
    assert p1.shape == (200,) and p1.dtype == np.float64
    assert reg.module_.base.net[-1].out_features == 1
    assert clone(reg).fit(X, y2).predict(X).shape == (200, 2)
    assert not hasattr(reg, "predict_proba")
    np.testing.assert_array_equal(p1, clone(reg).fit(X, y1).predict(X))


def _D(hidden=(16,)):
    return sum(p.numel() for p in MLP(64, hidden, 10).parameters())


@pytest.mark.parametrize("kw, name", [
    ({"init_scaler": InitScaler(reference="glorot")}, "init_scaler__reference"),
    ({"init_scaler": InitScaler(radius=-1.0)}, "init_scaler__radius"),
    ({"init_scaler": InitScaler(radius=float("nan"))}, "init_scaler__radius"),
    ({"init_scaler": InitScaler(radius=float("inf"))}, "init_scaler__radius"),
    ({"init_scaler": InitScaler(radius="big")}, "init_scaler__radius"),
    ({"init_scaler": InitScaler(temperature=0)}, "init_scaler__temperature"),
    ({"init_scaler": InitScaler(mode="layer")}, "init_scaler__mode"),
    ({"init_scaler": InitScaler(init="orthogonal")}, "init_scaler__init"),
    ({"subspace": SubspaceProjector(dim=0)}, "subspace__dim"),
    ({"subspace": SubspaceProjector(dim=_D() + 1)}, "subspace__dim"),
    ({"subspace": SubspaceProjector(dim=5, kind="torus")}, "subspace__kind"),
    ({"subspace": SubspaceProjector(dim=5, projection="magic")}, "subspace__projection"),
    ({"subspace": SubspaceProjector(dim=5, metric="per_unit")}, "subspace__metric"),
    ({"subspace": SubspaceProjector(dim=5, metric=np.ones(3))}, "metric"),
    ({"init_scaler": 2.0}, "init_scaler must be None or a InitScaler"),
    ({"dtype": "float16"}, "dtype"),
    ({"random_state": -1}, "random_state"),
    ({"module__in_features": 32}, "module__in_features"),
    ({"module__out_features": 12}, "module__out_features"),
])
def test_invalid_parameters_raise_at_fit(digits, kw, name):
    X, y = digits
    net = net_(**kw)  # constructing never validates
    with pytest.raises(ValueError, match=name):
        net.fit(X, y)


@pytest.mark.parametrize("labels", ["0..9", "1..10", "two", "strings"])
def test_skorch_validation_split_scores_the_held_out_fold(digits, labels):
    # skorch's ValidSplit hands its Dataset (encoded labels) to the valid_acc scorer: the
    # recorded accuracy is that of the held-out fold (the first of a 5-fold split, as
    # ValidSplit(5) makes it: not stratified) whatever the labels are
    from sklearn.model_selection import KFold
    from skorch.dataset import ValidSplit

    X, y = digits
    y = {"0..9": y, "1..10": y + 1, "two": np.where(y < 5, 3, 7),
         "strings": np.array(list("abcdefghij"))[y]}[labels]
    net = GoldilocksClassifier(MLP, module__hidden=(16,), max_epochs=5, random_state=0,
                               lr=3e-2, train_split=ValidSplit(5)).fit(X, y)
    _, held_out = next(KFold(5).split(X, y))
    acc = net.score(X[held_out], y[held_out])
    assert acc > 0.6  # well above chance: mismatched label codes would score ~0
    assert net.history[-1, "valid_acc"] == pytest.approx(acc)


def test_warm_start_and_partial_fit_refuse_another_output_count(digits):
    X, _ = digits
    y1 = X[:, :5].sum(1)
    y2 = np.stack([y1, -y1], axis=1)
    for first, then in ((y1, y2), (y2, y1)):
        reg = GoldilocksRegressor(MLP, module__hidden=(8,), max_epochs=1, random_state=0,
                                  warm_start=True).fit(X, first)
        with pytest.raises(ValueError, match="target\\(s\\) per sample"):
            reg.fit(X, then)
        with pytest.raises(ValueError, match="target\\(s\\) per sample"):
            reg.partial_fit(X, then)
        assert clone(reg).set_params(warm_start=False).fit(X, then).predict(X).shape == \
            then.shape  # a fresh fit takes the new shape


def test_set_params_dtype_on_a_fitted_net_reinitializes_it(digits):
    X, y = digits
    net = net_(init_scaler=InitScaler(1.0)).fit(X, y)
    net.set_params(dtype="float64")
    assert all(p.dtype == torch.float64 for p in net.module_.parameters())
    fresh = net_(init_scaler=InitScaler(1.0), dtype="float64", max_epochs=0).fit(X, y)
    np.testing.assert_array_equal(net.predict_proba(X), fresh.predict_proba(X))
    net.partial_fit(X, y)  # the optimizer follows the new parameters
    assert not np.array_equal(net.predict_proba(X), fresh.predict_proba(X))


def test_images_of_another_shape_and_sample_weight_are_refused(digits):
    from goldisk.models import SmallCNN

    X, y = digits
    net = GoldilocksClassifier(SmallCNN, max_epochs=1, random_state=0).fit(
        X.reshape(-1, 1, 8, 8), y)
    for shape in ((1, 10, 10), (1, 4, 16), (64,)):
        Z = np.zeros((3, *shape))
        for Xp in (Z, Z.tolist()):
            with pytest.raises(ValueError, match=r"samples of shape \(1, 8, 8\)"):
                net.predict(Xp)
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        net_().fit(X, y, sample_weight=np.ones(len(y)))


def test_partial_fit_classes_fixes_the_label_set_on_the_first_call(digits):
    X, y = digits
    first = y < 5
    net = net_(max_epochs=1).partial_fit(X[first], y[first], classes=np.arange(10))
    np.testing.assert_array_equal(net.classes_, np.arange(10))
    assert net.module_.net[-1].out_features == 10
    w = net.module_.net[-1].weight.detach().clone()
    net.partial_fit(X[~first], y[~first])  # labels 5..9: known, training goes on
    assert len(net.history) == 2 and not torch.equal(w, net.module_.net[-1].weight)
    # the same as passing classes to the constructor
    ref = net_(max_epochs=1, classes=np.arange(10)).partial_fit(X[first], y[first])
    torch.testing.assert_close(ref.module_.net[-1].weight, w, rtol=0, atol=0)


def test_predict_proba_rows_sum_to_one_in_float64(digits):
    X, y = digits
    net = net_(max_epochs=1).fit(X, y)  # float32 module
    p = net.predict_proba(X)
    assert p.dtype == np.float64 and np.abs(p.sum(axis=1) - 1).max() <= 4e-16
    logits = net.module_(torch.as_tensor(X, dtype=torch.float32)).detach().double()
    np.testing.assert_allclose(p, torch.softmax(logits, 1).numpy(), rtol=0, atol=1e-6)


def test_initialize_before_fit_says_how_to_give_the_sizes(digits):
    # skorch's initialize() + load_params pattern: the sizes fit would infer are not known
    with pytest.raises(ValueError, match=r"before any fit \(initialize\(\), then load_params"):
        net_().initialize()
    X, y = digits
    net = net_(module__in_features=64, module__out_features=10, classes=list(range(10)))
    assert net.initialize().predict(X[:3]).shape == (3,)


def test_lr_default_is_1e3_in_full_space_and_the_geometry_rule_in_a_subspace(digits):
    from goldisk.estimators._lr import ADAPTIVE_C, SGD_C

    X, y = digits
    assert GoldilocksClassifier(MLP).lr is None and GoldilocksRegressor(MLP).lr is None
    full = net_(lr=None, max_epochs=0).fit(X, y)
    assert full.lr_ == 1e-3 and full.optimizer_.param_groups[0]["lr"] == 1e-3
    for proj in ("dense", "fastfood"):
        sub = net_(lr=None, max_epochs=0,
                   subspace=SubspaceProjector(dim=20, projection=proj)).fit(X, y)
        P = sub.projection_matrix().astype(np.float64)  # brute force ||P||_F^2
        frob2 = float((P ** 2).sum())
        assert sub.lr_ == pytest.approx(ADAPTIVE_C / frob2, rel=1e-6)
        far = clone(sub).set_params(init_scaler=InitScaler(radius=2.5)).fit(X, y)
        assert far.lr_ == pytest.approx(2.5 * ADAPTIVE_C / frob2, rel=1e-6)
        near = clone(sub).set_params(init_scaler=InitScaler(radius=0.5)).fit(X, y)
        assert near.lr_ == pytest.approx(sub.lr_, rel=1e-12)  # no shrinking below 1
        assert sub.optimizer_.param_groups[0]["lr"] == sub.lr_
        sgd = clone(sub).set_params(optimizer=torch.optim.SGD).fit(X, y)
        assert sgd.lr_ == SGD_C
        sgd_far = clone(sgd).set_params(init_scaler=InitScaler(radius=4.0)).fit(X, y)
        assert sgd_far.lr_ == pytest.approx(SGD_C / 4.0)
        assert clone(sub).get_params()["lr"] is None  # clone keeps the rule, not a number
    # a user's value wins: lr= or optimizer__lr=
    given = net_(lr=0.02, max_epochs=0, subspace=SubspaceProjector(dim=20)).fit(X, y)
    assert given.lr_ == 0.02 == given.optimizer_.param_groups[0]["lr"]
    opt = net_(lr=None, optimizer__lr=0.05, max_epochs=0,
               subspace=SubspaceProjector(dim=20)).fit(X, y)
    assert opt.optimizer_.param_groups[0]["lr"] == 0.05
    # back to None on a fitted net: the rule again, not None itself
    given.set_params(lr=None)
    P = given.projection_matrix().astype(np.float64)
    assert given.optimizer_.param_groups[0]["lr"] == pytest.approx(ADAPTIVE_C / (P ** 2).sum())
    # a subspace as large as D (a full hypersphere): never below the full-space default
    sphere = net_(lr=None, max_epochs=0,
                  subspace=SubspaceProjector(kind="hypersphere")).fit(X, y)
    assert sphere.lr_ == max(1e-3, ADAPTIVE_C / sphere.module_.D)
