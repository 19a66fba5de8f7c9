"""One table of bad inputs across the estimators, the engine and the command-line tool.

Every row names a bad input and what it must give: a ``ValueError`` / ``TypeError``
whose message names the parameter and the fix (``match=``), raised from goldisk,
scikit-learn or skorch validation code (never from deep inside torch); or, for the CLI,
exit status 2 with one readable stderr line naming the option and nothing written to the
output folder (no CSV, PNG or JSON). A few rows are inputs that must simply work
(pandas, float16, unseen labels in ``score``). ``case(..., xfail=...)`` marks a known
gap (none at present); ``docs/reliability.md`` describes each.
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from goldisk import (
    CurvatureProbe,
    GoldilocksClassifier,
    GoldilocksRegressor,
    GoldilocksSelector,
    InitScaler,
    SoftmaxTemperature,
    SubspaceModule,
    SubspaceProjector,
    hessian_statistics,
    hutchinson,
    model_state,
    radius,
    reference_radius,
    rescale_,
    subspace_hessian,
)
from goldisk.cli import main
from goldisk.datasets import load_dataset, load_torchvision, make_circles3
from goldisk.experiments import subspace_train, trajectory
from goldisk.models import MLP, LeNet5, SmallCNN, init_weights_, make_model
from goldisk.projections import make_projection
from goldisk.sweep import radius_sweep

# ---------------------------------------------------------------- tiny data and models
_rng = np.random.default_rng(0)
X = _rng.normal(size=(24, 4)).astype(np.float32)
Y = np.arange(24) % 3
X_NAN = X.copy()
X_NAN[0, 0] = np.nan
X_INF = X.copy()
X_INF[1, 2] = np.inf
D = 4 * 5 + 5 + 5 * 3 + 3  # MLP(4, (5,), 3)


def net():
    torch.manual_seed(0)
    return MLP(4, (5,), 3)


def zero_net():
    m = net()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m


def proj(d=3, D_=D):
    return make_projection("dense", D_, d, random_state=0)


def _no_unit(rows):
    raise AssertionError(f"a unit ran before the bad setting was refused: {rows}")


def clf(**kw):
    params = dict(module__hidden=(5,), max_epochs=1, random_state=0)
    params.update(kw)
    return GoldilocksClassifier(MLP, **params)


def reg(**kw):
    params = dict(module__hidden=(5,), max_epochs=1, random_state=0)
    params.update(kw)
    return GoldilocksRegressor(MLP, **params)


@functools.lru_cache(maxsize=1)
def _fitted():
    return clf().fit(X, Y)


def fitted():
    import copy

    return copy.deepcopy(_fitted())


def sweep(model=None, X_=X, y_=Y, **kw):
    params = dict(radii=[1.0], dims=(2,), n_subspaces=1, progress=False)
    params.update(kw)
    return radius_sweep(net() if model is None else model, X_, y_, **params)


# ---------------------------------------------------------------- issue 17 helpers
X_REV = X[::-1]          # negative row stride
X_COLREV = X[:, ::-1]    # negative column stride
Y_REV = Y[::-1]


def _same_fit(Xa, Xb):
    """fit + predict_proba on a negative-stride X equal those on its contiguous copy."""
    a = clf().fit(Xa, Y_REV).predict_proba(Xa)
    b = clf().fit(np.ascontiguousarray(Xb), Y_REV).predict_proba(np.ascontiguousarray(Xb))
    return np.array_equal(a, b)


class _TupleNet(nn.Module):
    def __init__(self, in_features=4, out_features=3):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.lin(x), x.sum()


class _Frozen(nn.Module):
    def __init__(self, in_features=4, out_features=3):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features).requires_grad_(False)

    def forward(self, x):
        return self.lin(x)


class _BNNet(nn.Module):
    def __init__(self, in_features=4, out_features=3):
        super().__init__()
        self.lin, self.bn = nn.Linear(in_features, 5), nn.BatchNorm1d(5)
        self.out = nn.Linear(5, out_features)

    def forward(self, x):
        return self.out(self.bn(self.lin(x)))


def _sparse_hessian():
    return subspace_hessian(net(), sp.csr_matrix(X), Y, proj())


def _probe_reversed():
    a = CurvatureProbe(dim=2, n_subspaces=1, random_state=0).measure(fitted(), X_REV, Y_REV)
    b = CurvatureProbe(dim=2, n_subspaces=1, random_state=0).measure(
        fitted(), np.ascontiguousarray(X_REV), Y_REV.copy())
    return a.equals(b)


def _hessian_reversed():
    a = subspace_hessian(net(), X_COLREV, Y, proj()).H
    b = subspace_hessian(net(), np.ascontiguousarray(X_COLREV), Y, proj()).H
    return torch.equal(a, b)


def _a_file_above(out):
    (out.parent / "afile").write_text("not a folder")


def _corrupt_config(out):
    out.mkdir()
    (out / "config.json").write_text('{"dims": [2], ')


# ---------------------------------------------------------------- the table
OK = "ok"  # the input must be accepted


@dataclass
class Cli:
    """A `goldisk` command line; ``{out}`` is replaced by a fresh output folder."""

    argv: list
    setup: object = None  # callable(out_path) run before the command
    keep: tuple = field(default_factory=tuple)  # files the setup wrote, allowed to stay


TINY = ["--radii", "1", "--dims", "2", "--n-subspaces", "1", "--hessian-samples", "20",
        "--hidden", "4", "--no-progress"]


def _existing(out):
    out.mkdir()
    (out / "notes.txt").write_text("mine")


def _a_file(out):
    out.write_text("not a folder")


def _other_settings(out):
    out.mkdir()
    (out / "config.json").write_text('{"dims": [7], "radii": [1.0]}')


def case(id, target, expect, match=None, *, check=None, xfail=None):
    marks = [pytest.mark.xfail(reason=xfail, strict=False)] if xfail else []
    return pytest.param(target, expect, match, check, id=id, marks=marks)


_HS = "owned by goldisk/curvature/_hessian.py: subspace_hessian does not validate its data"
_SW = "owned by goldisk/sweep.py"

CASES = [
    # ------------------------------------------------------------ estimators
    case("clf-X-nan", lambda: clf().fit(X_NAN, Y), ValueError,
         r"(?s)Input X contains NaN.*imputer transformer"),
    case("clf-X-inf", lambda: clf().fit(X_INF, Y), ValueError,
         r"X contains infinity.*Remove or clip the infinite values"),
    case("clf-X-overflows-float32", lambda: clf().fit(X.astype(np.float64) * 1e300, Y),
         ValueError, r"too large for dtype\('float32'\).*dtype='float64'"),
    case("clf-X-empty", lambda: clf().fit(X[:0], Y[:0]), ValueError,
         r"0 sample\(s\).*minimum of 1 is required"),
    case("clf-X-no-features", lambda: clf().fit(X[:, :0], Y), ValueError,
         r"0 feature\(s\).*minimum of 1"),
    case("clf-X-1d", lambda: clf().fit(X[:, 0], Y), ValueError,
         r"(?s)Expected 2D array.*Reshape your data"),
    case("clf-X-y-lengths", lambda: clf().fit(X, Y[:10]), ValueError,
         r"inconsistent numbers of samples: \[24, 10\]"),
    case("clf-X-sparse", lambda: clf().fit(sp.csr_matrix(X), Y), TypeError,
         r"Sparse data was passed for X.*toarray"),
    case("clf-X-pandas", lambda: clf().fit(pd.DataFrame(X, columns=list("abcd")),
                                           pd.Series(Y)).predict(pd.DataFrame(
                                               X, columns=list("abcd"))), OK,
         check=lambda p: p.shape == (24,)),
    case("clf-X-float16", lambda: clf().fit(X.astype(np.float16), Y).predict_proba(
        X.astype(np.float16)), OK, check=lambda p: np.isfinite(p).all()),
    case("clf-y-one-class", lambda: clf().fit(X, np.zeros(24, int)), ValueError,
         r"y has 1 class \(\[0\]\).*at least 2 classes.*classes=\["),
    case("clf-y-continuous", lambda: clf().fit(X, _rng.normal(size=24)), ValueError,
         r"Unknown label type: continuous"),
    case("clf-partial_fit-first-chunk-lacks-labels",
         lambda: clf().partial_fit(X[Y < 2], Y[Y < 2]).partial_fit(X, Y), ValueError,
         r"labels not in classes_ \[0, 1\]: \[2\].*pass classes=\[...\] listing every "
         r"label to the first partial_fit call"),
    case("clf-partial-fit-unseen-labels", lambda: fitted().partial_fit(X, Y + 5), ValueError,
         r"y contains labels not in classes_ \[0, 1, 2\]: \[5, 6, 7\]"),
    case("clf-score-unseen-labels", lambda: fitted().score(X, Y + 5), OK,
         check=lambda s: s == 0.0),
    case("clf-predict-wrong-n-features", lambda: fitted().predict(X[:, :3]), ValueError,
         r"X has 3 features, but GoldilocksClassifier is expecting 4"),
    case("clf-module__in_features-wrong", lambda: clf(module__in_features=7).fit(X, Y),
         ValueError, r"module__in_features=7 but X has 4 features; remove module__in_features"),
    case("clf-module-instance-wrong-input", lambda: GoldilocksClassifier(
        MLP(7, (5,), 3), max_epochs=1).fit(X, Y), ValueError,
         r"module could not process X.*module__in_features=4"),
    case("clf-module-instance-wrong-n-logits", lambda: GoldilocksClassifier(
        MLP(4, (5,), 2), max_epochs=1).fit(X, Y), ValueError,
         r"y has 3 classes; pass module__out_features=3"),
    case("clf-module-without-parameters", lambda: GoldilocksClassifier(
        nn.Flatten, max_epochs=1).fit(X, Y), ValueError, r"module Flatten has no parameters"),
    case("clf-dtype-float16", lambda: clf(dtype="float16").fit(X, Y), ValueError,
         r"dtype must be one of \['float32', 'float64'\]"),
    case("clf-dtype-torch", lambda: clf(dtype=torch.float64).fit(X, Y), OK,
         check=lambda n: n.module_.net[0].weight.dtype == torch.float64),
    case("clf-device-unknown", lambda: clf(device="banana").fit(X, Y), ValueError,
         r"device must be a torch device such as 'cpu'"),
    case("clf-device-meta", lambda: clf(device="meta").fit(X, Y), ValueError,
         r"device='meta' holds no data"),
    case("engine-device-unknown", lambda: model_state(net(), X, Y, device="gpu0"), ValueError,
         r"device must be a torch device"),
    case("clf-partial_fit-classes-twice", lambda: clf(classes=[0, 1, 2]).partial_fit(
        X, Y, classes=[0, 1, 2]), ValueError, r"classes was given both to the constructor"),
    case("reg-partial_fit-classes", lambda: reg().partial_fit(X, Y.astype(float), classes=[0]),
         ValueError, r"classes is for classifiers"),
    case("clf-max_epochs-negative", lambda: clf(max_epochs=-1).fit(X, Y), ValueError,
         r"max_epochs must be an int >= 0 \(0: initialize only\), got -1"),
    case("clf-metric-wrong-length", lambda: clf(subspace=SubspaceProjector(
        dim=2, metric=np.ones(5))).fit(X, Y), ValueError,
         r"subspace__metric must be.*array of length D=43.*got shape \(5,\)"),
    case("clf-smallcnn-flat-digits", lambda: GoldilocksClassifier(
        SmallCNN, max_epochs=0, random_state=0).fit(np.zeros((6, 64), np.float32),
                                                    np.arange(6) % 2), OK,
         check=lambda n: n.module_.image_size == 8),
    case("clf-smallcnn-channels-last", lambda: GoldilocksClassifier(
        SmallCNN, max_epochs=0, random_state=0).fit(np.zeros((6, 32, 32, 3), np.float32),
                                                    np.arange(6) % 2), ValueError,
         r"X looks channels-last \(N, H, W, C\).*pass X.transpose\(0, 3, 1, 2\)"),
    case("clf-smallcnn-no-channel-axis", lambda: GoldilocksClassifier(
        SmallCNN, max_epochs=0, random_state=0).fit(np.zeros((6, 8, 8), np.float32),
                                                    np.arange(6) % 2), ValueError,
         r"X has no channel axis: pass X\[:, None\] \(shape \(N, 1, 8, 8\)\)"),
    case("clf-smallcnn-geometry-from-NCHW", lambda: GoldilocksClassifier(
        SmallCNN, module__channels=(2,), max_epochs=1, random_state=0).fit(
            _rng.normal(size=(6, 3, 16, 16)).astype(np.float32), np.arange(6) % 2), OK,
         check=lambda n: (n.module_.image_size, n.module_.in_channels) == (16, 3)),
    case("clf-smallcnn-predict-flat-after-NCHW-fit", lambda: GoldilocksClassifier(
        SmallCNN, max_epochs=0, random_state=0).fit(np.zeros((6, 1, 8, 8), np.float32),
                                                    np.arange(6) % 2).predict(
        np.zeros((6, 64), np.float32)), ValueError,
         r"samples of shape \(64,\) but the net was fitted on samples of shape \(1, 8, 8\); "
         r"pass X.reshape\(len\(X\), 1, 8, 8\)"),
    case("clf-smallcnn-predict-NCHW-after-flat-fit", lambda: GoldilocksClassifier(
        SmallCNN, max_epochs=0, random_state=0).fit(np.zeros((6, 64), np.float32),
                                                    np.arange(6) % 2).predict(
        np.zeros((6, 1, 8, 8), np.float32)), ValueError,
         r"fitted on samples of shape \(64,\); pass X.reshape\(len\(X\), 64\)"),
    case("clf-smallcnn-in_features", lambda: GoldilocksClassifier(
        SmallCNN, module__in_features=64, max_epochs=0).fit(np.zeros((6, 64), np.float32),
                                                          np.arange(6) % 2), ValueError,
         r"Pass exactly the arguments it takes \(in_channels, out_features, image_size"),
    case("clf-instance-with-module-params", lambda: GoldilocksClassifier(
        MLP(4, (5,), 3), module__hidden=(4,), max_epochs=1).fit(X, Y),
         ValueError, r"module is an instance.*pass the class \(module=MLP\)"),
    case("clf-random_state-negative", lambda: clf(random_state=-1).fit(X, Y), ValueError,
         r"random_state must be a non-negative int.*e\.g\. 0"),
    case("clf-radius-negative", lambda: clf(init_scaler=InitScaler(radius=-1)).fit(X, Y),
         ValueError, r"init_scaler__radius must be a finite number > 0.*init_scaler__radius=1"),
    case("clf-radius-zero", lambda: clf(init_scaler=InitScaler(radius=0)).fit(X, Y),
         ValueError, r"init_scaler__radius must be a finite number > 0, got 0"),
    case("clf-radius-nan", lambda: clf(init_scaler=InitScaler(radius=math.nan)).fit(X, Y),
         ValueError, r"init_scaler__radius must be a finite number > 0, got nan"),
    case("clf-temperature-zero", lambda: clf(init_scaler=InitScaler(temperature=0)).fit(X, Y),
         ValueError, r"init_scaler__temperature must be a finite number > 0"),
    case("clf-reference-unknown", lambda: clf(init_scaler=InitScaler(reference="glorot")).fit(
        X, Y), ValueError, r"init_scaler__reference must be one of \['xavier'"),
    case("clf-mode-unknown", lambda: clf(init_scaler=InitScaler(mode="per_neuron")).fit(X, Y),
         ValueError, r"init_scaler__mode must be one of \['global', 'per_layer'\]"),
    case("clf-subspace-dim-zero", lambda: clf(subspace=SubspaceProjector(dim=0)).fit(X, Y),
         ValueError, r"subspace__dim must be an int >= 1"),
    case("clf-subspace-dim-negative", lambda: clf(subspace=SubspaceProjector(dim=-3)).fit(X, Y),
         ValueError, r"subspace__dim must be an int >= 1"),
    case("clf-subspace-dim-above-D", lambda: clf(subspace=SubspaceProjector(dim=10**6)).fit(
        X, Y), ValueError, r"subspace__dim must be an int >= 1 and <= D=43"),
    case("clf-subspace-dim-float", lambda: clf(subspace=SubspaceProjector(dim=2.5)).fit(X, Y),
         ValueError, r"subspace__dim must be None or an int >= 1"),
    case("clf-projection-unknown", lambda: clf(subspace=SubspaceProjector(
        dim=3, projection="gaussian")).fit(X, Y), ValueError,
         r"subspace__projection must be one of \['dense'"),
    case("clf-kind-unknown", lambda: clf(subspace=SubspaceProjector(dim=3, kind="ball")).fit(
        X, Y), ValueError, r"subspace__kind must be one of \['hyperplane', 'hypersphere'\]"),
    case("clf-metric-unknown", lambda: clf(subspace=SubspaceProjector(
        dim=3, metric="fisher")).fit(X, Y), ValueError,
         r"subspace__metric must be None, 'per_layer' or an array"),
    case("clf-hypersphere-radius-zero", lambda: GoldilocksClassifier(
        zero_net(), subspace=SubspaceProjector(dim=3, kind="hypersphere"),
        max_epochs=1).fit(X, Y), ValueError, r"hypersphere through w0 = 0 has radius 0; "
                                             r"initialize the module"),
    case("reg-y-nan", lambda: reg().fit(X, np.full(24, np.nan)), ValueError,
         r"Input y contains NaN"),
    case("reg-module-instance-wrong-n-outputs", lambda: GoldilocksRegressor(
        MLP(4, (5,), 1), max_epochs=1).fit(X, np.ones((24, 2))), ValueError,
         r"y has 2 targets per sample; pass module__out_features=2"),
    case("scaler-apply-radius-negative", lambda: InitScaler(radius=-2.0).apply_(net()),
         ValueError, r"radius must be a finite number > 0.*radius=1\.0"),
    case("scaler-reference-on-parameterless-module",
         lambda: InitScaler().apply_(nn.Flatten()), ValueError,
         r"no trainable Linear or Conv layer.*reference='current'"),
    case("projector-build-dim-above-D", lambda: SubspaceProjector(dim=44).build(net()),
         ValueError, r"dim must be an int >= 1 and <= D=43"),
    case("probe-unfitted-net", lambda: CurvatureProbe(dim=2).measure(clf(), X, Y), ValueError,
         r"not initialized yet. Call 'initialize' or 'fit'"),
    case("probe-unseen-labels", lambda: CurvatureProbe(dim=2).measure(fitted(), X, Y + 5),
         ValueError, r"y contains labels not in classes_"),
    case("probe-float-class-labels-on-a-plain-module",
         lambda: CurvatureProbe(dim=2).measure(net(), X, Y.astype(float)), ValueError,
         r"loss='mse' needs 3 target\(s\).*integer class labels or pass "
         r"loss='cross_entropy'"),
    case("probe-X-nan", lambda: CurvatureProbe(dim=2).measure(net(), X_NAN, Y), ValueError,
         r"X contains NaN or infinite values; remove or impute"),
    case("probe-X-inf", lambda: CurvatureProbe(dim=2).measure(net(), X_INF, Y), ValueError,
         r"X contains NaN or infinite values"),
    case("probe-X-empty", lambda: CurvatureProbe(dim=2).measure(net(), X[:0], Y[:0]),
         ValueError, r"X is empty \(0 samples\); pass at least one sample"),
    case("probe-X-sparse", lambda: CurvatureProbe(dim=2).measure(net(), sp.csr_matrix(X), Y),
         TypeError, r"X is a scipy sparse matrix.*X\.toarray\(\)"),
    case("probe-X-pandas", lambda: CurvatureProbe(dim=2, random_state=0).measure(
        net(), pd.DataFrame(X), pd.Series(Y)), OK,
         check=lambda t: np.isfinite(t["trace_ratio"]).all()),
    case("probe-X-float16", lambda: CurvatureProbe(dim=2, random_state=0).measure(
        net(), X.astype(np.float16), Y), OK, check=lambda t: np.isfinite(t["trace"]).all()),
    case("probe-X-wrong-shape", lambda: CurvatureProbe(dim=2).measure(net(), X[:, :3], Y),
         ValueError, r"model could not process X with sample shape \(3,\).*in_features"),
    case("probe-criterion-label-smoothing", lambda: CurvatureProbe(dim=2).measure(
        fitted().set_params(criterion__label_smoothing=0.3).initialize(), X, Y), ValueError,
         r"CrossEntropyLoss\(label_smoothing=0.3\) is not the plain mean.*loss='cross_entropy'"),
    case("probe-criterion-class-weights", lambda: CurvatureProbe(dim=2).measure(
        clf(criterion__weight=torch.tensor([1.0, 5.0, 0.2])).fit(X, Y), X, Y), ValueError,
         r"CrossEntropyLoss\(weight=tensor.*not the plain mean cross-entropy"),
    case("probe-criterion-sum", lambda: CurvatureProbe(dim=2).measure(
        clf(criterion__reduction="sum").fit(X, Y), X, Y), ValueError,
         r"reduction='sum'.*pass loss='cross_entropy' to the probe"),
    case("probe-criterion-override", lambda: CurvatureProbe(dim=2, loss="cross_entropy").measure(
        clf(criterion__label_smoothing=0.3).fit(X, Y), X, Y), OK,
         check=lambda t: np.isfinite(t["trace"]).all()),
    case("hessian-weight-norm", lambda: subspace_hessian(
        nn.Sequential(torch.nn.utils.parametrizations.weight_norm(nn.Linear(4, 3))), X, Y, None),
         ValueError, r"uses weight normalization.*g \* v / v.norm"),
    case("hutchinson-weight-norm-hook", lambda: hutchinson(
        torch.nn.utils.weight_norm(nn.Linear(4, 3)), X, Y), ValueError,
         r"uses weight normalization \(in 'Linear'\)"),
    case("hessian-all-frozen", lambda: subspace_hessian(
        net().requires_grad_(False), X, Y, None), ValueError,
         r"every parameter of model \(MLP\) is frozen.*requires_grad_\(True\)"),
    case("radius-all-frozen", lambda: radius(net().requires_grad_(False)), ValueError,
         r"no trainable parameter to measure.*requires_grad_\(True\)"),
    case("probe-X-y-lengths", lambda: CurvatureProbe(dim=2).measure(net(), X, Y[:10]),
         ValueError, r"X has 24 samples but y has 10 samples"),
    case("probe-labels-out-of-range", lambda: CurvatureProbe(dim=2).measure(net(), X, Y + 3),
         ValueError, r"labels in \[3, 5\] but model returns 3 logits.*LabelEncoder"),
    case("probe-module-without-parameters", lambda: CurvatureProbe(dim=2).measure(
        nn.Flatten(), X, Y), ValueError, r"model \(Flatten\) has no parameters"),
    case("probe-hypersphere-radius-zero", lambda: CurvatureProbe(
        dim=2, kind="hypersphere").measure(zero_net(), X, Y), ValueError,
         r"kind='hypersphere' needs a point of radius > 0.*kind='hyperplane'"),
    case("probe-dim-zero", lambda: CurvatureProbe(dim=0).measure(net(), X, Y), ValueError,
         r"dim must be an int >= 1"),
    case("probe-dim-above-D", lambda: CurvatureProbe(dim=50).measure(net(), X, Y), ValueError,
         r"dim must be an int >= 1 and <= D=43"),
    case("probe-n_subspaces-zero", lambda: CurvatureProbe(dim=2, n_subspaces=0).measure(
        net(), X, Y), ValueError, r"n_subspaces must be an int >= 1"),
    case("probe-projection-unknown", lambda: CurvatureProbe(dim=2, projection="gauss").measure(
        net(), X, Y), ValueError, r"projection must be one of \['dense'"),
    case("probe-kind-unknown", lambda: CurvatureProbe(dim=2, kind="ball").measure(net(), X, Y),
         ValueError, r"kind must be one of \['hyperplane', 'hypersphere'\]"),
    case("probe-statistic-unknown", lambda: CurvatureProbe(dim=2, statistic="acc").measure(
        net(), X, Y), ValueError, r"statistic must be one of \[.trace."),
    case("probe-loss-unknown", lambda: CurvatureProbe(dim=2, loss="hinge").measure(
        net(), X, Y), ValueError, r"loss must be one of \['auto', 'cross_entropy', 'mse'\]"),
    case("selector-criterion-unknown", lambda: GoldilocksSelector(
        clf(), criterion="top5").fit(X, Y), ValueError, r"criterion must be a callable or one"),
    case("selector-regressor-accuracy", lambda: GoldilocksSelector(
        reg(), n_candidates=2, criterion="accuracy", probe=CurvatureProbe(dim=2)).fit(
        X, Y.astype(float)), ValueError, r"criterion='accuracy' is not measured.*regression"),
    case("selector-n_candidates-zero", lambda: GoldilocksSelector(
        clf(), n_candidates=0).fit(X, Y), ValueError, r"n_candidates must be an int >= 1"),
    case("selector-probe-not-a-probe", lambda: GoldilocksSelector(clf(), probe="x").fit(X, Y),
         ValueError, r"probe must be None or a CurvatureProbe"),
    case("selector-estimator-not-a-net", lambda: GoldilocksSelector(
        nn.Linear(4, 3)).fit(X, Y), ValueError, r"estimator must be a goldisk net"),
    # ------------------------------------------------------------ engine
    case("reference_radius-unknown", lambda: reference_radius(net(), "glorot"), ValueError,
         r"reference must be one of \('xavier'"),
    case("reference_radius-no-layers", lambda: reference_radius(nn.Flatten()), ValueError,
         r"no trainable Linear or Conv layer.*reference='current'"),
    case("radius-module-without-parameters", lambda: radius(nn.ReLU()), ValueError,
         r"module has no parameters to measure; pass a module with at least one trainable"),
    case("rescale-target-negative", lambda: rescale_(net(), -1.0), ValueError,
         r"target radius must be finite and > 0, got -1"),
    case("rescale-target-zero", lambda: rescale_(net(), 0.0), ValueError,
         r"target radius must be finite and > 0, got 0"),
    case("rescale-target-nan", lambda: rescale_(net(), math.nan), ValueError,
         r"target radius must be finite and > 0, got nan"),
    case("rescale-target-inf", lambda: rescale_(net(), math.inf), ValueError,
         r"target radius must be finite and > 0, got inf"),
    case("rescale-mode-unknown", lambda: rescale_(net(), 1.0, mode="per_neuron"), ValueError,
         r"mode must be 'global' or 'per_layer'"),
    case("rescale-module-at-zero", lambda: rescale_(zero_net(), 1.0), ValueError,
         r"radius is 0; initialize it first"),
    case("temperature-zero", lambda: SoftmaxTemperature(net(), 0.0), ValueError,
         r"temperature must be finite and > 0"),
    case("make_projection-kind-unknown", lambda: make_projection("gaussian", 10, 2), ValueError,
         r"kind must be one of \['dense'"),
    case("make_projection-d-zero", lambda: make_projection("dense", 10, 0), ValueError,
         r"d must be an int in \[1, D=10\], got d=0"),
    case("make_projection-d-above-D", lambda: make_projection("sparse", 10, 11), ValueError,
         r"d must be an int in \[1, D=10\], got d=11"),
    case("make_projection-D-zero", lambda: make_projection("dense", 0, 1), ValueError,
         r"D must be an int >= 1"),
    case("make_projection-metric-length", lambda: make_projection(
        "dense", 10, 2, metric=np.ones(3)), ValueError, r"metric must be a 1-D array of length "
                                                         r"D=10"),
    case("SubspaceModule-kind-unknown", lambda: SubspaceModule(net(), proj(), kind="ball"),
         ValueError, r"kind must be one of \('hyperplane', 'hypersphere'\)"),
    case("SubspaceModule-module-without-parameters", lambda: SubspaceModule(
        nn.Flatten(), proj()), ValueError, r"module has no parameters"),
    case("SubspaceModule-projection-D-mismatch", lambda: SubspaceModule(net(), proj(D_=10)),
         ValueError, r"projection maps to D=10 but the module has D=43.*D=<number of "),
    case("SubspaceModule-hypersphere-radius-zero", lambda: SubspaceModule(
        zero_net(), proj(), kind="hypersphere"), ValueError, r"radius 0; initialize the module"),
    case("hutchinson-X-nan", lambda: hutchinson(net(), X_NAN, Y, n_probes=2), ValueError,
         r"X contains NaN or infinite values"),
    case("hutchinson-X-empty", lambda: hutchinson(net(), X[:0], Y[:0], n_probes=2),
         ValueError, r"X is empty"),
    case("hutchinson-X-sparse", lambda: hutchinson(net(), sp.csr_matrix(X), Y, n_probes=2),
         TypeError, r"X is a scipy sparse matrix.*toarray"),
    case("hutchinson-X-pandas", lambda: hutchinson(net(), pd.DataFrame(X), pd.Series(Y),
                                                   n_probes=2, random_state=0), OK,
         check=lambda r: math.isfinite(r["trace"])),
    case("hutchinson-X-wrong-shape", lambda: hutchinson(net(), X[:, :3], Y, n_probes=2),
         ValueError, r"model could not process X"),
    case("hutchinson-module-without-parameters", lambda: hutchinson(nn.Flatten(), X, Y),
         ValueError, r"has no parameters"),
    case("hutchinson-n_probes-zero", lambda: hutchinson(net(), X, Y, n_probes=0), ValueError,
         r"n_probes must be an int >= 1"),
    case("hutchinson-batch_size-zero", lambda: hutchinson(net(), X, Y, n_probes=2, batch_size=0),
         ValueError, r"batch_size must be a positive integer, got 0"),
    case("hutchinson-dtype-half", lambda: hutchinson(net(), X, Y, dtype=torch.float16),
         ValueError, r"dtype must be torch.float32 or torch.float64"),
    case("model_state-batch_size-zero", lambda: model_state(net(), X, Y, batch_size=0),
         ValueError, r"batch_size must be a positive integer, got 0"),
    case("hessian-batch_size-fraction", lambda: subspace_hessian(net(), X, Y, None,
                                                                 batch_size=2.5),
         ValueError, r"batch_size must be a positive integer, got 2.5"),
    case("hessian-batch_size-bool", lambda: subspace_hessian(net(), X, Y, None, batch_size=True),
         ValueError, r"batch_size must be a positive integer, got True"),
    case("hessian-scales-a-number", lambda: subspace_hessian(net(), X, Y, None, scales=2.0),
         ValueError, r"scales must be None or a sequence of finite numbers \(e.g. \[2.0\]\)"),
    case("hessian-dtype-half", lambda: subspace_hessian(net(), X, Y, None, dtype=torch.float16),
         ValueError, r"dtype must be torch.float32 or torch.float64.*half precision"),
    case("hessian-dtype-python-float", lambda: subspace_hessian(net(), X, Y, None, dtype=float),
         OK, check=lambda r: r.H.dtype == torch.float64),
    case("hessian-dtype-by-name", lambda: subspace_hessian(net(), X, Y, None, dtype="float64"),
         OK, check=lambda r: torch.equal(r.H, subspace_hessian(net(), X, Y, None).H)),
    case("model_state-X-nan", lambda: model_state(net(), X_NAN, Y), ValueError,
         r"X contains NaN or infinite values"),
    case("model_state-labels-out-of-range", lambda: model_state(net(), X, Y - 1), ValueError,
         r"labels in \[-1, 1\] but model returns 3 logits"),
    case("model_state-mse-target-shape", lambda: model_state(
        net(), X, np.ones((24, 2)), loss="mse"), ValueError,
         r"loss='mse' needs 3 target\(s\) per sample"),
    case("model_state-y-float-labels", lambda: model_state(net(), X, Y + 0.5), ValueError,
         r"needs integer class labels in y.*loss='mse'"),
    case("subspace_hessian-X-empty", lambda: subspace_hessian(net(), X[:0], Y[:0], proj()),
         ValueError, r"X is empty"),
    case("subspace_hessian-kind-unknown", lambda: subspace_hessian(
        net(), X, Y, proj(), kind="ball"), ValueError, r"kind must be 'hyperplane' or"),
    case("subspace_hessian-projection-D-mismatch", lambda: subspace_hessian(
        net(), X, Y, proj(D_=10)), ValueError, r"projection maps to D=10 but the model has D=43"),
    case("subspace_hessian-batch_size-zero", lambda: subspace_hessian(
        net(), X, Y, proj(), batch_size=0), ValueError,
         r"batch_size must be a positive integer, got 0"),
    case("subspace_hessian-point-length", lambda: subspace_hessian(
        net(), X, Y, proj(), point=torch.zeros(5)), ValueError, r"point has 5 entries"),
    case("subspace_hessian-X-float16", lambda: subspace_hessian(
        net(), X.astype(np.float16), Y, proj()), OK,
         check=lambda r: r.H.dtype == torch.float64 and bool(torch.isfinite(r.H).all())),
    case("subspace_hessian-X-nan", lambda: subspace_hessian(net(), X_NAN, Y, proj()),
         ValueError, r"X contains NaN"),
    case("subspace_hessian-X-wrong-shape", lambda: subspace_hessian(net(), X[:, :3], Y, proj()),
         ValueError, r"could not process X"),
    case("subspace_hessian-labels-out-of-range", lambda: subspace_hessian(
        net(), X, Y + 3, proj()), ValueError, r"labels in"),
    case("subspace_hessian-module-without-parameters", lambda: subspace_hessian(
        nn.Flatten(), X, Y), ValueError, r"has no parameters"),
    case("subspace_hessian-hypersphere-radius-zero", lambda: subspace_hessian(
        zero_net(), X, Y, proj(), kind="hypersphere"), ValueError, r"radius"),
    case("subspace_hessian-X-pandas", lambda: subspace_hessian(
        net(), pd.DataFrame(X), pd.Series(Y), proj()), OK),
    case("radius_sweep-radius-nan", lambda: sweep(radii=[math.nan]), ValueError,
         r"radii must be finite ratios r/r_ref > 0, e\.g\. radii=\[0\.5, 1, 2\]"),
    case("radius_sweep-radius-zero", lambda: sweep(radii=[0.0]), ValueError,
         r"radii must be finite ratios r/r_ref > 0"),
    case("radius_sweep-radius-negative", lambda: sweep(radii=[1.0, -2.0]), ValueError,
         r"radii must be finite ratios r/r_ref > 0"),
    case("radius_sweep-dims-zero", lambda: sweep(dims=(0,)), ValueError,
         r"dims must be integers in \[1, D=43\]"),
    case("radius_sweep-dims-above-D", lambda: sweep(dims=(2, 44)), ValueError,
         r"dims must be integers in \[1, D=43\]"),
    case("radius_sweep-reference-unknown", lambda: sweep(reference="glorot"), ValueError,
         r"reference must be one of"),
    case("radius_sweep-X-nan", lambda: sweep(X_=X_NAN), ValueError, r"X contains NaN"),
    case("radius_sweep-projection-unknown", lambda: sweep(projection="gaussian"), ValueError,
         r"projection must be one of"),
    case("radius_sweep-X-wrong-shape", lambda: sweep(X_=X[:, :3]), ValueError,
         r"could not process X"),
    case("models-MLP-hidden-negative", lambda: MLP(4, (-1,), 3), ValueError,
         r"hidden must be int\(s\) >= 1, got hidden=\(-1,\)"),
    case("models-MLP-in_features-zero", lambda: MLP(0, (3,), 3), ValueError,
         r"in_features must be int\(s\) >= 1"),
    case("models-MLP-activation-unknown", lambda: MLP(4, (3,), 3, activation="gelu"),
         ValueError, r"activation must be one of \['relu', 'tanh'\]"),
    case("models-SmallCNN-channels-zero", lambda: SmallCNN(channels=(0,)), ValueError,
         r"channels must be int\(s\) >= 1"),
    case("models-LeNet5-image_size", lambda: LeNet5(image_size=30), ValueError,
         r"image_size must be 28 or 32"),
    case("models-make_model-unknown", lambda: make_model("resnet", 4, 3), ValueError,
         r"unknown model name 'resnet'; valid names are mlp"),
    case("models-init_weights_-unknown", lambda: init_weights_(net(), "glorot"), ValueError,
         r"unknown init scheme 'glorot'; valid schemes are xavier"),
    case("datasets-root-missing", lambda: load_torchvision("mnist", "/nonexistent/goldisk"),
         ValueError, r"root='/nonexistent/goldisk' does not exist.*download=True"),
    case("datasets-root-none", lambda: load_torchvision("cifar10", None), ValueError,
         r"root is required to load 'cifar10'"),
    case("datasets-name-unknown", lambda: load_dataset("iris"), ValueError,
         r"unknown dataset 'iris'; valid names are digits"),
    case("datasets-circles-too-few", lambda: make_circles3(2), ValueError,
         r"n_samples must be at least 3"),
    case("datasets-circles-noise-nan", lambda: make_circles3(30, noise=math.nan), ValueError,
         r"noise must be a finite number >= 0.*noise=0\.05"),
    case("radius_sweep-max_samples-negative",
         lambda: radius_sweep(net(), X, Y, radii=[1.0], dims=(2,), max_samples=-5,
                              progress=False),
         ValueError, r"max_samples must be a positive int or None, got -5"),
    case("radius_sweep-max_samples-hides-a-length-mismatch",
         lambda: radius_sweep(net(), X, Y[:10], radii=[1.0], dims=(2,), max_samples=5,
                              progress=False),
         ValueError, r"X has 24 samples but y has 10"),
    case("subspace_train-label-outside-the-logits",
         lambda: subspace_train(net(), X, Y, X, np.where(Y == 2, 5, Y), radii=[1.0],
                                dims=(2,), n_repeats=1, epochs=1, progress=False),
         ValueError, r"y_val: y has labels in \[0, 5\] but model returns 3 logits"),
    case("trajectory-label-outside-the-logits",
         lambda: trajectory(net(), X, Y + 1, X, Y, radii=[1.0], n_repeats=1, epochs=1,
                            progress=False),
         ValueError, r"y has labels in \[1, 3\] but model returns 3 logits"),
    case("trajectory-n_repeats-zero",
         lambda: trajectory(net(), X, Y, X, Y, radii=[1.0], n_repeats=0, epochs=1,
                            progress=False),
         ValueError, r"n_repeats must be a positive integer, got 0"),
    case("trajectory-lr-nan",
         lambda: trajectory(net(), X, Y, X, Y, radii=[1.0], n_repeats=1, epochs=1,
                            lr=math.nan, progress=False),
         ValueError, r"lr must be finite and > 0, got nan"),
    case("subspace_train-lr-zero-refused-before-the-first-unit",
         lambda: subspace_train(net(), X, Y, X, Y, radii=[1.0], dims=(2,), n_repeats=1,
                                epochs=1, lr=0, progress=False, on_result=_no_unit),
         ValueError, r"lr must be finite and > 0, got 0"),
    case("subspace_train-batch_size-fraction",
         lambda: subspace_train(net(), X, Y, X, Y, radii=[1.0], dims=(2,), n_repeats=1,
                                epochs=1, batch_size=2.5, progress=False),
         ValueError, r"batch_size must be a positive integer, got 2.5"),
    case("trajectory-lr-none",
         lambda: trajectory(net(), X, Y, X, Y, radii=[1.0], n_repeats=1, epochs=1, lr=None,
                            progress=False),
         ValueError, r"lr must be finite and > 0, got None"),
    case("subspace_train-lr-as-a-0d-tensor",
         lambda: subspace_train(net(), X, Y, X, Y, radii=[1.0], dims=(2,), n_repeats=1,
                                epochs=0, lr=torch.tensor(0.01), progress=False), OK,
         check=lambda df: len(df) > 0),
    case("clf-cnn-predict-channels-last-after-NCHW-fit", lambda: GoldilocksClassifier(
        SmallCNN, module__channels=(2,), max_epochs=0, random_state=0).fit(
            np.zeros((6, 3, 16, 16), np.float32), np.arange(6) % 2).predict(
        np.zeros((6, 16, 16, 3), np.float32)), ValueError,
         r"pass X.transpose\(0, 3, 1, 2\): X looks channels-last"),
    case("subspace_train-full_lr-negative",
         lambda: subspace_train(net(), X, Y, X, Y, radii=[1.0], dims=(2,), n_repeats=1,
                                epochs=1, full_lr=-1.0, progress=False),
         ValueError, r"full_lr must be finite and > 0, got -1.0"),
    case("make_projection-random_state-2**64",
         lambda: make_projection("sparse", 100, 3, random_state=2**64), ValueError,
         r"random_state must be an int below 2\*\*64"),
    case("projection-integer-theta",
         lambda: make_projection("sparse", 100, 3, random_state=0)(torch.ones(3, dtype=torch.long)),
         TypeError, r"theta has dtype torch.int64 .* cast theta with theta.to\(torch.float64\)"),
    case("radius_sweep-radius_batch-zero",
         lambda: radius_sweep(net(), X, Y, radii=[1.0], dims=(2,), radius_batch=0,
                              progress=False),
         ValueError, r"radius_batch must be a positive int or None, got 0"),
    case("hutchinson-gauss_newton-string",
         lambda: hutchinson(net(), X, Y, n_probes=2, gauss_newton="no"), ValueError,
         r"gauss_newton must be True or False, got 'no'"),
    case("subspace_hessian-gauss_newton-string",
         lambda: subspace_hessian(net(), X, Y, proj(), gauss_newton="no"), ValueError,
         r"gauss_newton must be True or False, got 'no'"),
    case("CurvatureProbe-gauss_newton-string",
         lambda: CurvatureProbe(dim=2, gauss_newton="no").measure(net(), X, Y), ValueError,
         r"gauss_newton must be True or False, got 'no'"),
    case("models-MLP-bias-string", lambda: MLP(4, (3,), 3, bias="no"), TypeError,
         r"bias must be True or False, got bias='no'"),
    case("models-MLP-hidden-int", lambda: MLP(4, 3, 3), OK,
         check=lambda m: m.hidden == (3,)),
    case("hessian_statistics-not-square", lambda: hessian_statistics(torch.ones(2, 3)),
         ValueError, r"H must be a square \(d, d\) matrix, got shape \(2, 3\)"),
    case("hutchinson-n_probes-float", lambda: hutchinson(net(), X, Y, n_probes=1.5),
         ValueError, r"n_probes must be an int >= 1, got 1\.5"),
    case("subspace_hessian-scales-empty", lambda: subspace_hessian(net(), X, Y, proj(), scales=[]),
         ValueError, r"scales must be a non-empty sequence of finite numbers"),
    case("subspace_hessian-scales-nan",
         lambda: subspace_hessian(net(), X, Y, proj(), scales=[float("nan")]),
         ValueError, r"scales must be a non-empty sequence of finite numbers"),
    # ------------------------------------------------------------ command line
    case("cli-radii-negative", Cli(["--radii", "-1"]), 2, "--radii"),
    case("cli-radii-zero", Cli(["--radii", "0,1"]), 2, "--radii"),
    case("cli-radii-nan", Cli(["--radii", "nan"]), 2, "--radii"),
    case("cli-radii-inf", Cli(["--radii", "1,inf"]), 2, "--radii"),
    case("cli-radii-empty", Cli(["--radii", ","]), 2, "--radii"),
    case("cli-dims-zero", Cli(["--dims", "0"]), 2, "--dims"),
    case("cli-dims-above-D", Cli(["--dims", "100000"]), 2, r"--dims must be <= D="),
    case("cli-hidden-zero", Cli(["--hidden", "0"]), 2, "--hidden"),
    case("cli-batch-size-zero", Cli(["--batch-size", "0"]), 2, "--batch-size"),
    case("cli-hessian-samples-zero", Cli(["--hessian-samples", "0"]), 2, "--hessian-samples"),
    case("cli-max-samples-zero", Cli(["--max-samples", "0"]), 2, "--max-samples"),
    case("cli-seed-negative", Cli(["--seed", "-1"]), 2, "--seed"),
    case("cli-option-unknown", Cli(["--bogus", "1"]), 2,
         r"goldisk sweep: error: unrecognized arguments: --bogus 1"),
    case("cli-scheduler-unreachable-dask",
         Cli(["--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"]), 2,
         r"--scheduler tcp://127\.0\.0\.1:1: nothing accepts connections at 127\.0\.0\.1:1"),
    case("cli-scheduler-unreachable-ray", Cli(["--backend", "ray", "--scheduler", "127.0.0.1:1"]),
         2, r"--scheduler 127\.0\.0\.1:1: nothing accepts connections.*head node"),
    case("cli-device-unknown", Cli(["--device", "banana"]), 2, "--device"),
    case("cli-device-cuda-missing", Cli(["--device", "cuda:0"]), 2, "--device"),
    case("cli-device-meta", Cli(["--device", "meta"]), 2, r"--device='meta' holds no data"),
    case("cli-device-mps-missing", Cli(["--device", "mps"]), 2,
         r"--device='mps' cannot be used here \(.{1,100}\); use 'cpu' or 'cuda'"),
    case("cli-projection-unknown", Cli(["--projection", "gaussian"]), 2, "--projection"),
    case("cli-kind-unknown", Cli(["--kind", "ball"]), 2, "--kind"),
    case("cli-reference-unknown", Cli(["--reference", "glorot"]), 2, "--reference"),
    case("cli-dataset-unknown", Cli(["--dataset", "iris"]), 2, "--dataset"),
    case("cli-n-subspaces-not-int", Cli(["--n-subspaces", "two"]), 2, "--n-subspaces"),
    case("cli-model-lenet5-on-digits", Cli(["--model", "lenet5"]), 2,
         r"--model lenet5: image_size must be 28 or 32"),
    case("cli-data-root-missing", Cli(["--dataset", "mnist", "--data-root", "/nonexistent/x"]),
         2, "--data-root"),
    case("cli-data-root-empty", Cli(["--dataset", "cifar10", "--data-root", "{tmp}"]), 2,
         r"no cifar10 dataset.*--download"),
    case("cli-out-exists", Cli([], setup=_existing, keep=("notes.txt",)), 2,
         r"--out .* already exists; pass --resume .* or --force"),
    case("cli-out-is-a-file", Cli([], setup=_a_file), 2, r"--out .* is not a folder"),
    case("cli-force-foreign-folder", Cli(["--force"], setup=_existing, keep=("notes.txt",)), 2,
         r"--out .* holds files goldisk did not write .*--force only replaces goldisk output"),
    case("cli-resume-other-settings", Cli(["--resume"], setup=_other_settings,
                                          keep=("config.json",)), 2,
         r"--resume with different settings \(dims"),
    # ------------------------------------------------------------ issue 17 (cases 7-17)
    case("i17-c07-fit-predict-negative-row-stride", lambda: _same_fit(X_REV, X_REV), OK,
         check=bool),
    case("i17-c07-fit-predict-negative-column-stride",
         lambda: _same_fit(X_COLREV[::-1], X_COLREV[::-1]), OK, check=bool),
    case("i17-c07-fit-big-endian", lambda: clf().fit(X.astype(">f4"), Y).predict(
        X.astype(">f8")), OK, check=lambda p: p.shape == (24,)),
    case("i17-c07-probe-negative-stride", _probe_reversed, OK, check=bool),
    case("i17-c07-subspace_hessian-negative-stride", _hessian_reversed, OK, check=bool),
    case("i17-c08-fit-module-returns-a-tuple", lambda: GoldilocksClassifier(
        _TupleNet, max_epochs=1).fit(X, Y), ValueError,
         r"module returns a tuple, not one tensor.*out\[0\] of \(logits, aux\)"),
    case("i17-c09-fit-every-parameter-frozen", lambda: GoldilocksClassifier(
        _Frozen, max_epochs=1).fit(X, Y), ValueError,
         r"every parameter of the module is frozen.*requires_grad_\(True\).*max_epochs=0"),
    case("i17-c10-lr-a-string", lambda: clf(lr="0.1").fit(X, Y), TypeError,
         r"lr must be a real number, got '0.1'.*pass lr=0.1"),
    case("i17-c10-lr-a-bool", lambda: clf(lr=True).fit(X, Y), TypeError, r"lr must be a real"),
    case("i17-c10-lr-zero", lambda: clf(lr=0.0).fit(X, Y), ValueError, r"lr must be > 0"),
    case("i17-c11-subspace_hessian-sparse-X", _sparse_hessian, TypeError,
         r"X is a scipy sparse matrix.*X.toarray\(\)"),
    case("i17-c12-subspace_hessian-matrix-wrong-D", lambda: subspace_hessian(
        net(), X, Y, np.ones((D + 1, 2))), ValueError, r"projection has shape \(44, 2\)"),
    case("i17-c12-SubspaceModule-ndarray", lambda: SubspaceModule(net(), np.eye(D)[:, :3]),
         OK, check=lambda m: m.d == 3),
    case("i17-c13-selector-given-the-class", lambda: GoldilocksSelector(
        GoldilocksClassifier).fit(X, Y), TypeError,
         r"estimator must be an instance, got the class GoldilocksClassifier"),
    case("i17-c14-make_projection-device-gpu", lambda: make_projection(
        "dense", 10, 2, device="gpu"), ValueError, r"device must be a torch device.*'gpu'"),
    case("i17-c15-hessian_statistics-0x0", lambda: hessian_statistics(np.zeros((0, 0))),
         ValueError, r"H is empty \(0 x 0\)"),
    case("i17-c16-out-below-a-file", Cli(["--out", "{tmp}/afile/run"], setup=_a_file_above),
         2, r"--out .*afile/run lies below .*afile, which is a file"),
    case("i17-c16-out-in-proc", Cli(["--out", "/proc/goldisk-x/run"]), 2,
         r"--out /proc/goldisk-x/run cannot be created in /proc"),
    case("i17-c17-resume-corrupt-config", Cli(["--resume"], setup=_corrupt_config,
                                              keep=("config.json",)), 2,
         r"--resume: .*config.json cannot be read \(JSONDecodeError"),
    case("i17-c17-temperature-underflows", lambda: clf(init_scaler=InitScaler(
        temperature=1e-40)).fit(X, Y), ValueError,
         r"init_scaler__temperature=1e-40.*overflows torch.float32"),
    case("i17-c17-mixed-int-str-labels", lambda: clf().fit(X, np.array(
        [0, "a", 1] * 8, dtype=object)), ValueError, r"y mixes numbers and strings"),
    case("i17-c17-batchnorm-last-batch-of-one", lambda: GoldilocksClassifier(
        _BNNet, max_epochs=1, batch_size=23, train_split=None).fit(X, Y), ValueError,
         r"BatchNorm.*iterator_train__drop_last=True"),
    case("i17-c17-regressor-y-inf", lambda: reg().fit(X, np.r_[np.inf, np.zeros(23)]),
         ValueError, r"Input y contains infinity.*infinite values of y\."),
    case("i17-c01-current-per-layer-radius-underflows-float32", lambda: clf(
        max_epochs=0, init_scaler=InitScaler(reference="current", mode="per_layer",
                                             radius=1e-50)).fit(X, Y), ValueError,
         r"init_scaler__radius=1e-50 cannot be represented in torch.float32"),
    case("i17-SoftmaxTemperature-string", lambda: SoftmaxTemperature(net(), "2"), TypeError,
         r"temperature must be a real number, got '2'"),
    case("i17-subspace_hessian-point-nan", lambda: subspace_hessian(
        net(), X, Y, proj(), point=torch.full((D,), float("nan"))), ValueError,
         r"point contains NaN or infinite values"),
    case("i17-warm_start-truthy-string", lambda: clf(warm_start="no").fit(X, Y), TypeError,
         r"warm_start must be True or False, got 'no'"),
    case("i17-sweep-progress-truthy-string", lambda: sweep(progress="no"), TypeError,
         r"progress must be True or False"),
    case("i17-sweep-n_subspaces-string", lambda: sweep(n_subspaces="2"), ValueError,
         r"n_subspaces must be an int >= 1, got '2'"),
    case("i17-radius-weights_only-string", lambda: radius(net(), weights_only="yes"),
         TypeError, r"weights_only must be True or False"),
    case("i17-rescale-target-string", lambda: rescale_(net(), "2"), TypeError,
         r"target must be a real number, got '2'"),
]


def _innermost_file(tb) -> str:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "" if tb is None else tb.tb_frame.f_code.co_filename


def _from_inside_torch(exc) -> bool:
    """Whether ``exc`` (or the exception it was raised from) was raised in torch's code."""
    inside = f"{os.sep}torch{os.sep}"
    return any(inside in _innermost_file(e.__traceback__)
               for e in (exc, exc.__cause__) if e is not None)


def _run_cli(cli: Cli, out, tmp_path, capsys):
    if cli.setup is not None:
        cli.setup(out)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in cli.argv]
    capsys.readouterr()
    try:
        code = main(["sweep", "--out", str(out), *TINY, *argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    if isinstance(target, Cli):
        if "cuda" in " ".join(target.argv) and torch.cuda.is_available():
            pytest.skip("a CUDA device is available")
        if "mps" in target.argv and torch.backends.mps.is_available():
            pytest.skip("an MPS device is available")
        out = tmp_path / "out"
        code, err = _run_cli(target, out, tmp_path, capsys)
        assert code == expect
        assert len(err) == 1, err
        assert err[0].startswith("goldisk sweep: error: ")
        assert re.search(match, err[0]), err[0]
        assert "Traceback" not in err[0]
        written = [p.name for p in out.rglob("*")] if out.is_dir() else []
        assert [n for n in written if n not in target.keep] == []
        assert not any(n.endswith((".csv", ".png", ".json", ".tmp")) for n in written
                       if n not in target.keep)
        return
    if expect is OK:
        result = target()
        assert check is None or check(result)
        return
    with pytest.raises(expect, match=match) as excinfo, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # e.g. numpy's overflow in a cast
        target()
    # ours (or scikit-learn's / skorch's validation), not a shape error from inside torch
    assert not _from_inside_torch(excinfo.value), excinfo.getrepr()


def test_table_is_large_enough():
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids))
    bad = [p for p in CASES if p.values[1] is not OK and not p.marks]
    assert len(bad) >= 40
    assert sum(isinstance(p.values[0], Cli) for p in CASES) >= 20
