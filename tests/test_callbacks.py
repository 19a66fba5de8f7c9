"""skorch callbacks: RadiusTracker, CurvatureTracker, ZeroLogitTracker, NonFiniteStopper."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from skorch import NeuralNetClassifier

from goldisk import CurvatureProbe, GoldilocksClassifier, InitScaler, SubspaceProjector, radius
from goldisk._flat import parameter_vector
from goldisk.callbacks import (
    CurvatureTracker,
    NonFiniteStopper,
    NonFiniteTrainingError,
    RadiusTracker,
    ZeroLogitTracker,
)
from goldisk.curvature import model_state
from goldisk.models import MLP


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:200] / 16.0, y[:200]


def net_(callbacks, **kw):
    params = dict(module__hidden=(16,), max_epochs=3, lr=1e-2, random_state=0)
    params.update(kw)
    return GoldilocksClassifier(MLP, callbacks=callbacks, **params)


def test_radius_tracker_full_space(digits):
    X, y = digits
    tracker = RadiusTracker()
    net = net_([tracker], init_scaler=InitScaler(1.0)).fit(X, y)
    radii, dists = net.history[:, "radius"], net.history[:, "distance_from_init"]
    assert len(radii) == 3 and radii[-1] == pytest.approx(radius(net.module_), rel=1e-6)
    assert dists[-1] == pytest.approx(float(
        (parameter_vector(net.module_) - tracker.initial_).double().norm()), rel=1e-6)
    assert 0 < dists[0] < dists[-1]
    start = GoldilocksClassifier(MLP, module__hidden=(16,), max_epochs=0, random_state=0,
                                 init_scaler=InitScaler(1.0)).fit(X, y)
    torch.testing.assert_close(tracker.initial_, parameter_vector(start.module_))
    net.partial_fit(X, y)  # continues: the initial point is kept
    assert len(net.history) == 6 and net.history[-1, "distance_from_init"] > dists[-1]


def test_radius_tracker_starts_over_when_set_params_rebuilds_the_module(digits):
    X, y = digits
    net = net_([RadiusTracker()], init_scaler=InitScaler(1.0), max_epochs=1).fit(X, y)
    net.set_params(init_scaler__radius=4.0)  # a new module, four times as far out
    start = parameter_vector(net.module_).clone()
    net.partial_fit(X, y)
    moved = float((parameter_vector(net.module_) - start).double().norm())
    assert net.history[-1, "distance_from_init"] == pytest.approx(moved, rel=1e-6)
    assert moved < 0.1 * float(start.norm())  # not the distance to the old start point


def test_radius_tracker_subspace_records_full_point(digits):
    X, y = digits
    sub = SubspaceProjector(dim=10, kind="hypersphere")
    net = net_([RadiusTracker(prefix="w_")], subspace=sub, lr=0.1).fit(X, y)
    r0 = float(net.module_.r0)
    np.testing.assert_allclose(net.history[:, "w_radius"], r0, rtol=1e-5)
    assert net.history[-1, "w_distance_from_init"] > 0


def test_curvature_tracker_every_and_values(digits):
    X, y = digits
    probe = CurvatureProbe(dim=4, n_subspaces=1, max_samples=50, random_state=0)
    net = net_([CurvatureTracker(probe, every=2)], max_epochs=4).fit(X, y)
    recorded = [("curv_trace_ratio" in row) for row in net.history]
    assert recorded == [False, True, False, True]
    last = probe.measure(net, X, y)
    assert net.history[-1, "curv_trace_ratio"] == pytest.approx(last["trace_ratio"][0],
                                                                 rel=1e-10)
    assert net.history[-1, "curv_g_trace"] == pytest.approx(last["g_trace"][0], rel=1e-10)


def test_curvature_tracker_given_data_and_subspace(digits):
    X, y = digits
    labels = np.array(["a", "b", "c"])[y % 3]
    probe = CurvatureProbe(dim=3, n_subspaces=1, random_state=0)
    tracker = CurvatureTracker(probe, X=X[:40], y=labels[:40], prefix="val_")
    net = net_([tracker], subspace=SubspaceProjector(dim=10), max_epochs=1).fit(X, labels)
    assert net.history[-1, "val_loss"] == pytest.approx(
        probe.measure(net, X[:40], labels[:40])["loss"][0], rel=1e-10)
    with pytest.raises(ValueError, match="every"):
        net_([CurvatureTracker(probe, every=0)]).fit(X, y)


def test_curvature_tracker_columns(digits):
    X, y = digits
    probe = CurvatureProbe(dim=4, n_subspaces=1, max_samples=50, random_state=0)
    net = net_([CurvatureTracker(probe, columns=["trace_ratio", "loss"])],
               max_epochs=1).fit(X, y)
    assert sorted(k for k in net.history[-1] if k.startswith("curv_")) == [
        "curv_loss", "curv_trace_ratio"]
    full = probe.measure(net, X, y)
    assert net.history[-1, "curv_trace_ratio"] == pytest.approx(full["trace_ratio"][0],
                                                                rel=1e-10)
    assert net.history[-1, "curv_loss"] == pytest.approx(full["loss"][0], rel=1e-12)
    # only what the columns need is computed: state alone needs no Hessian at all
    calls = []
    real = probe._hessians

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(len(out[-1]))
        return out

    probe._hessians = spy
    for columns, hessians in ((["loss", "accuracy"], 0), (["g_dominance"], 1)):
        calls.clear()
        net.set_params(callbacks=[CurvatureTracker(probe, columns=columns)])
        net.initialize_callbacks()  # skorch leaves callbacks_ as they are on set_params
        net.partial_fit(X, y)
        assert calls == [hessians]
        for c in columns:
            assert net.history[-1, "curv_" + c] == pytest.approx(
                real.__self__.measure(net, X, y)[c][0], rel=1e-10)
    with pytest.raises(ValueError, match="columns must be None or a list of"):
        net_([CurvatureTracker(probe, columns="trace_ratio")]).fit(X, y)


def test_zero_logit_tracker(digits):
    X, y = digits
    net = net_([ZeroLogitTracker()], module__bias=False).fit(X, y)
    fracs = net.history[:, "zero_logit_frac"]
    assert len(fracs) == 3  # the last one: the trained module's, measured on its own
    assert fracs[-1] == model_state(net.module_, X, y)["zero_logit_frac"]
    labels = np.array(["a", "b", "c"])[y % 3]  # X alone is prepared, whatever the labels
    zeros = net_([ZeroLogitTracker(X=np.zeros((5, 64)))], module__bias=False).fit(X, labels)
    assert zeros.history[:, "zero_logit_frac"] == [1.0, 1.0, 1.0]  # no bias: f(0) = 0


def test_non_finite_stopper_raises_or_stops(digits):
    X, y = digits
    huge = InitScaler(radius=1e30)  # logits overflow float32 at once
    with pytest.raises(NonFiniteTrainingError, match="init_scaler__radius=1e\\+30"):
        net_([NonFiniteStopper()], init_scaler=huge).fit(X, y)
    with pytest.warns(RuntimeWarning, match="Training stopped"):
        net = net_([NonFiniteStopper(on_nonfinite="stop")], init_scaler=huge).fit(X, y)
    assert len(net.history) == 1 and net.history[-1, "nonfinite"] is True
    ok = net_([NonFiniteStopper()], init_scaler=InitScaler(1.0)).fit(X, y)
    assert len(ok.history) == 3
    with pytest.raises(ValueError, match="on_nonfinite"):
        net_([NonFiniteStopper(on_nonfinite="ignore")]).fit(X, y)


def test_non_finite_stopper_keeps_the_weights_finite(digits):
    X, y = digits
    # a learning rate that makes the second step's loss overflow: its non-finite gradient
    # is dropped before the optimizer, so the weights stay those after the first step
    kw = dict(init_scaler=InitScaler(1.0), optimizer=torch.optim.SGD, lr=1e12,
              batch_size=50)
    with pytest.raises(NonFiniteTrainingError, match="before the failing step"):
        net_([NonFiniteStopper()], **kw).fit(X, y)
    with pytest.warns(RuntimeWarning, match="Training stopped"):
        net = net_([NonFiniteStopper(on_nonfinite="stop")], **kw).fit(X, y)
    assert torch.isfinite(parameter_vector(net.module_)).all()
    start = net_([], init_scaler=InitScaler(1.0), max_epochs=0).fit(X, y)
    assert not torch.equal(parameter_vector(net.module_), parameter_vector(start.module_))
    # logits that overflow at the initialization itself: the start point is kept, and
    # predictions say that they mean nothing
    with pytest.warns(RuntimeWarning, match="Training stopped"):
        huge = net_([NonFiniteStopper(on_nonfinite="stop")],
                    init_scaler=InitScaler(radius=1e30)).fit(X, y)
    start = net_([], init_scaler=InitScaler(radius=1e30), max_epochs=0).fit(X, y)
    assert torch.equal(parameter_vector(huge.module_), parameter_vector(start.module_))
    with pytest.warns(RuntimeWarning, match="outputs are not finite"):
        huge.predict_proba(X)


def test_trackers_only_observe_and_measure_the_training_part(digits):
    from sklearn.model_selection import KFold
    from skorch.dataset import ValidSplit

    X, y = digits
    X32 = X.astype(np.float32)

    def plain(callbacks):  # shuffled batches drawn from torch's global RNG
        torch.manual_seed(123)
        net = NeuralNetClassifier(MLP, module__in_features=64, module__hidden=(16,),
                                  criterion=torch.nn.CrossEntropyLoss, max_epochs=3, lr=0.1,
                                  iterator_train__shuffle=True, train_split=None,
                                  verbose=0, callbacks=callbacks)
        return net.fit(X32, y)

    base = plain([])
    tracked = plain([ZeroLogitTracker(X=X), RadiusTracker()])
    assert tracked.history[:, "train_loss"] == base.history[:, "train_loss"]
    assert tracked.module_.training  # modes restored after each measurement
    # with a train_split the curvature is measured on the training part only
    probe = CurvatureProbe(dim=3, n_subspaces=1, random_state=0)
    tracker = CurvatureTracker(probe, columns=["loss"])
    net = net_([tracker], max_epochs=1, train_split=ValidSplit(5)).fit(X, y)
    train_part, _ = next(KFold(5).split(X, y))
    with torch.no_grad():
        logits = net.module_.double()(torch.as_tensor(X[train_part]))
    expected = float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(y[train_part])))
    assert net.history[-1, "curv_loss"] == pytest.approx(expected, rel=1e-10)
    assert tracker.data_ is None  # a fitted net carries no copy of the data
    with pytest.raises(ValueError, match="needs both X and y"):
        net_([CurvatureTracker(probe, X=X)]).fit(X, y)


def test_radius_tracker_keeps_its_start_when_callbacks_are_reinitialized(digits):
    X, y = digits
    net = net_([RadiusTracker(), ("curv", CurvatureTracker(CurvatureProbe(dim=2), every=9))],
               init_scaler=InitScaler(1.0), max_epochs=1).fit(X, y)
    start = net_([], init_scaler=InitScaler(1.0), max_epochs=0).fit(X, y)
    net.set_params(callbacks__curv__every=5)  # skorch re-initializes every callback
    net.partial_fit(X, y)
    moved = float((parameter_vector(net.module_) - parameter_vector(start.module_)).norm())
    assert net.history[-1, "distance_from_init"] == pytest.approx(moved, rel=1e-6)


def test_module_rebuild_leaves_callbacks_alone_and_old_trackers_keep_their_start(digits):
    from skorch.callbacks import Callback

    class Count(Callback):
        calls = 0

        def initialize(self):
            Count.calls += 1  # e.g. LoadInitState would load its checkpoint again
            return self

    X, y = digits
    tracker = RadiusTracker()
    net = net_([Count(), tracker], init_scaler=InitScaler(1.0), max_epochs=2).fit(X, y)
    calls = Count.calls
    net.set_params(init_scaler__radius=3.0)  # a new module: skorch leaves callbacks alone
    assert Count.calls == calls
    net.set_params(init_scaler__radius=1.0)
    del tracker.token_  # a tracker pickled before the start point had a token
    start = net_([], init_scaler=InitScaler(1.0), max_epochs=0).fit(X, y)
    net.partial_fit(X, y)
    moved = float((parameter_vector(net.module_) - parameter_vector(start.module_)).norm())
    assert net.history[-1, "distance_from_init"] == pytest.approx(moved, rel=1e-6)


def test_zero_logit_tracker_with_dict_input_on_a_plain_skorch_net(digits):
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(32, 10, bias=False), torch.nn.Linear(32, 10)

        def forward(self, left, right):
            return self.a(left) + self.b(right)

    X, y = digits
    X32 = X.astype(np.float32)
    net = NeuralNetClassifier(Two, criterion=torch.nn.CrossEntropyLoss, max_epochs=2,
                              train_split=None, verbose=0, callbacks=[ZeroLogitTracker()])
    net.fit({"left": X32[:, :32], "right": X32[:, 32:]}, y)
    assert net.history[:, "zero_logit_frac"] == [0.0, 0.0]


def test_callbacks_work_with_plain_skorch_nets(digits):
    X, y = digits
    net = NeuralNetClassifier(MLP, module__in_features=64, module__hidden=(8,),
                              criterion=torch.nn.CrossEntropyLoss, max_epochs=2,
                              train_split=None, verbose=0,
                              callbacks=[RadiusTracker(), ZeroLogitTracker(),
                                         CurvatureTracker(CurvatureProbe(dim=3,
                                                                         n_subspaces=1))])
    net.fit(X.astype(np.float32), y)
    assert len(net.history[:, "curv_trace"]) == 2 and len(net.history[:, "radius"]) == 2
    assert net.history[-1, "radius"] == pytest.approx(radius(net.module_), rel=1e-12)
    assert net.history[-1, "zero_logit_frac"] == model_state(net.module_, X, y)["zero_logit_frac"]
