"""Same ``random_state``, same numbers: across runs, ``n_jobs``, joblib backends, clone,
pickle and ``save_params``/``load_params``; files are only ever loaded safely."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import goldisk
from goldisk import (
    CurvatureProbe,
    GoldilocksClassifier,
    GoldilocksSelector,
    InitScaler,
    SubspaceProjector,
    hutchinson,
)
from goldisk.datasets import load_digits
from goldisk.models import MLP
from goldisk.sweep import radius_sweep

PACKAGE = Path(goldisk.__file__).parent


@pytest.fixture(scope="module")
def data():
    ds = load_digits()
    return ds.X[:90], ds.y[:90]


def net(**kw):
    params = dict(module__hidden=(8,), max_epochs=2, lr=1e-2, batch_size=32, random_state=3,
                  init_scaler=InitScaler(radius=1.5), subspace=SubspaceProjector(dim=12))
    params.update(kw)
    return GoldilocksClassifier(MLP, **params)


def probe():
    return CurvatureProbe(dim=4, n_subspaces=2, max_samples=50, random_state=0)


def test_same_random_state_same_numbers_across_runs(data):
    X, y = data
    a, b = net().fit(X, y), net().fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.history[:, "train_loss"] == b.history[:, "train_loss"]
    pd.testing.assert_frame_equal(probe().measure(a, X, y), probe().measure(b, X, y))
    module = MLP(64, (4,), 10)
    assert hutchinson(module, X, y, n_probes=4, random_state=1) == \
        hutchinson(module, X, y, n_probes=4, random_state=1)
    sel = [GoldilocksSelector(net(max_epochs=1), n_candidates=2, probe=probe(), refit=False,
                              random_state=5).fit(X, y) for _ in range(2)]
    pd.testing.assert_frame_equal(sel[0].candidates_, sel[1].candidates_)
    # a different seed gives different numbers (the seed is really used)
    c = net(random_state=4).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def _grid(n_jobs, backend=None):
    ds = load_digits()
    X, y = ds.X[:60], ds.y[:60]
    curv = CurvatureProbe(dim=3, n_subspaces=1, max_samples=30, random_state=0)
    grid = GridSearchCV(net(max_epochs=1), {"init_scaler__radius": [0.5, 2.0]}, cv=2,
                        n_jobs=n_jobs, scoring={"acc": "accuracy", "curv": curv},
                        refit="acc")
    if backend is None:
        grid.fit(X, y)
    else:
        with joblib.parallel_config(backend=backend):
            grid.fit(X, y)
    cols = ["mean_test_acc", "mean_test_curv", "split0_test_curv", "split1_test_acc"]
    table = pd.DataFrame(grid.cv_results_)[cols]
    assert np.isfinite(table.to_numpy()).all()  # no scorer failed (e.g. in a thread)
    return table, grid.best_estimator_.predict_proba(X)


def test_grid_search_same_numbers_across_n_jobs_and_backends():
    serial, proba = _grid(1)
    for n_jobs, backend in ((2, "loky"), (2, "threading")):
        table, p = _grid(n_jobs, backend)
        pd.testing.assert_frame_equal(table, serial, check_exact=True)
        np.testing.assert_array_equal(p, proba)


class _DropoutMLP(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(in_features, 16), torch.nn.ReLU(),
                                       torch.nn.Dropout(0.5), torch.nn.Linear(16, out_features))

    def forward(self, x):
        return self.net(x)


def _fit_dropout_net(seed, X, y):
    # no InitScaler: the module's own initialization and dropout both draw from torch's
    # global RNG, which threads share
    net = GoldilocksClassifier(_DropoutMLP, max_epochs=3, lr=1e-2, batch_size=16,
                               random_state=seed)
    return net.fit(X, y).predict_proba(X)


def test_threads_fitting_at_once_give_the_serial_numbers(data):
    X, y = data
    serial = [_fit_dropout_net(seed, X, y) for seed in range(4)]
    with joblib.parallel_config(backend="threading", n_jobs=4):
        threaded = joblib.Parallel()(joblib.delayed(_fit_dropout_net)(seed, X, y)
                                     for seed in range(4))
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


def _sweep_rows(X, y, n_jobs, backend=None):
    kw = dict(radii=[0.3, 3.0], dims=(2, 3), n_subspaces=2, max_samples=40, progress=False,
              random_state=7, n_jobs=n_jobs)
    if backend is None:
        return radius_sweep(MLP(64, (5,), 10), X, y, **kw)
    with joblib.parallel_config(backend=backend):
        return radius_sweep(MLP(64, (5,), 10), X, y, **kw)


def test_radius_sweep_same_rows_across_n_jobs_and_loky(data):
    X, y = data
    serial = _sweep_rows(*data, n_jobs=1)
    pd.testing.assert_frame_equal(_sweep_rows(X, y, 2, "loky"), serial, check_exact=True)


def test_radius_sweep_same_rows_with_the_threading_backend(data):
    X, y = data
    serial = _sweep_rows(X, y, n_jobs=1)
    pd.testing.assert_frame_equal(_sweep_rows(X, y, 2, "threading"), serial, check_exact=True)


def test_clone_and_pickle_give_the_same_numbers(data):
    X, y = data
    ref = net().fit(X, y)
    expected = ref.predict_proba(X)
    np.testing.assert_array_equal(clone(net()).fit(X, y).predict_proba(X), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(net())).fit(X, y).predict_proba(X),
                                  expected)
    back = pickle.loads(pickle.dumps(ref))
    np.testing.assert_array_equal(back.predict_proba(X), expected)
    pd.testing.assert_frame_equal(probe().measure(back, X, y), probe().measure(ref, X, y))
    p2 = pickle.loads(pickle.dumps(probe()))
    pd.testing.assert_frame_equal(p2.measure(ref, X, y), probe().measure(ref, X, y))


@pytest.mark.parametrize("subspace", [None, SubspaceProjector(dim=12, projection="sparse")],
                         ids=["full-space", "sparse-subspace"])
def test_save_params_load_params_weights_only(data, tmp_path, monkeypatch, subspace):
    X, y = data
    ref = net(subspace=subspace).fit(X, y)
    files = {k: tmp_path / f"{k}.pt" for k in ("f_params", "f_optimizer", "f_criterion")}
    ref.save_params(**files, f_history=tmp_path / "history.json")

    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    # a net built with other seeds: loading must restore exactly the saved point
    new = net(subspace=clone(subspace) if subspace is not None else None, random_state=99,
              module__in_features=64, module__out_features=10, classes=list(range(10)))
    new.initialize()
    assert new.torch_load_kwargs is None  # skorch then loads with weights_only=True
    new.load_params(**files, f_history=tmp_path / "history.json")
    assert calls and all(w is True for w in calls), calls
    for (k1, v1), (k2, v2) in zip(ref.module_.state_dict().items(),
                                  new.module_.state_dict().items(), strict=True):
        assert k1 == k2, (k1, k2)
        assert torch.equal(v1, v2) if torch.is_tensor(v1) else v1 == v2, k1
    np.testing.assert_array_equal(new.predict_proba(X), ref.predict_proba(X))
    assert new.history[:, "train_loss"] == ref.history[:, "train_loss"]
    pd.testing.assert_frame_equal(probe().measure(new, X, y), probe().measure(ref, X, y))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = ast.unparse(f) if isinstance(f, ast.Attribute | ast.Name) else ""
            yield name, node


def test_package_never_loads_files_unsafely():
    """Every ``torch.load`` in goldisk passes ``weights_only=True``; nothing is unpickled
    (no ``pickle.load(s)``, ``joblib.load``, ``pd.read_pickle``, ``np.load`` with
    ``allow_pickle=True``); files are read as CSV/JSON or tensors only."""
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20
    bad = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node in _calls(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            kw = {k.arg: k.value for k in node.keywords}
            if name.endswith("torch.load"):
                ok = isinstance(kw.get("weights_only"), ast.Constant) and \
                    kw["weights_only"].value is True
                if not ok:
                    bad.append(f"{where}: torch.load without weights_only=True")
            if name in ("pickle.load", "pickle.loads", "joblib.load", "pd.read_pickle",
                        "pandas.read_pickle", "cloudpickle.load", "dill.load"):
                bad.append(f"{where}: {name}")
            if name in ("np.load", "numpy.load") and isinstance(kw.get("allow_pickle"),
                                                               ast.Constant) \
                    and kw["allow_pickle"].value:
                bad.append(f"{where}: np.load(allow_pickle=True)")
        text = path.read_text(encoding="utf-8")
        for token in ("from pickle import load", "from torch import load",
                      "from joblib import load"):
            if token in text:
                bad.append(f"{path.name}: {token}")
    assert bad == []
