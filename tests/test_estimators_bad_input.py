"""Bad-input rows for the estimators' fit, predict and score (goldisk/estimators/:
GoldilocksClassifier, GoldilocksRegressor, InitScaler, SubspaceProjector).

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _bad_input_cases import (
    OK,
    X_COLREV,
    X_INF,
    X_NAN,
    X_REV,
    Y_REV,
    X,
    Y,
    _rng,
    case,
    clf,
    fitted,
    net,
    reg,
    run_row,
    zero_net,
)
from torch import nn

from goldisk import GoldilocksClassifier, GoldilocksRegressor, InitScaler, SubspaceProjector
from goldisk.models import MLP, SmallCNN


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


CASES = [
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
    case("clf-cnn-predict-channels-last-after-NCHW-fit", lambda: GoldilocksClassifier(
        SmallCNN, module__channels=(2,), max_epochs=0, random_state=0).fit(
            np.zeros((6, 3, 16, 16), np.float32), np.arange(6) % 2).predict(
        np.zeros((6, 16, 16, 3), np.float32)), ValueError,
         r"pass X.transpose\(0, 3, 1, 2\): X looks channels-last"),
    case("i17-c07-fit-predict-negative-row-stride", lambda: _same_fit(X_REV, X_REV), OK,
         check=bool),
    case("i17-c07-fit-predict-negative-column-stride",
         lambda: _same_fit(X_COLREV[::-1], X_COLREV[::-1]), OK, check=bool),
    case("i17-c07-fit-big-endian", lambda: clf().fit(X.astype(">f4"), Y).predict(
        X.astype(">f8")), OK, check=lambda p: p.shape == (24,)),
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
    case("i17-warm_start-truthy-string", lambda: clf(warm_start="no").fit(X, Y), TypeError,
         r"warm_start must be True or False, got 'no'"),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
