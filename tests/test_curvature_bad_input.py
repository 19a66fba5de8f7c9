"""Bad-input rows for the curvature engine's entry points (goldisk/curvature/:
subspace_hessian, hutchinson, model_state, hessian_statistics).

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
from _bad_input_cases import OK, X_COLREV, X_NAN, D, X, Y, case, net, proj, run_row, zero_net
from torch import nn

from goldisk import hessian_statistics, hutchinson, model_state, subspace_hessian


def _sparse_hessian():
    return subspace_hessian(net(), sp.csr_matrix(X), Y, proj())


def _hessian_reversed():
    a = subspace_hessian(net(), X_COLREV, Y, proj()).H
    b = subspace_hessian(net(), np.ascontiguousarray(X_COLREV), Y, proj()).H
    return torch.equal(a, b)


CASES = [
    case("engine-device-unknown", lambda: model_state(net(), X, Y, device="gpu0"), ValueError,
         r"device must be a torch device"),
    case("hessian-weight-norm", lambda: subspace_hessian(
        nn.Sequential(torch.nn.utils.parametrizations.weight_norm(nn.Linear(4, 3))), X, Y, None),
         ValueError, r"uses weight normalization.*g \* v / v.norm"),
    case("hutchinson-weight-norm-hook", lambda: hutchinson(
        torch.nn.utils.weight_norm(nn.Linear(4, 3)), X, Y), ValueError,
         r"uses weight normalization \(in 'Linear'\)"),
    case("hessian-all-frozen", lambda: subspace_hessian(
        net().requires_grad_(False), X, Y, None), ValueError,
         r"every parameter of model \(MLP\) is frozen.*requires_grad_\(True\)"),
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
    case("hutchinson-gauss_newton-string",
         lambda: hutchinson(net(), X, Y, n_probes=2, gauss_newton="no"), ValueError,
         r"gauss_newton must be True or False, got 'no'"),
    case("subspace_hessian-gauss_newton-string",
         lambda: subspace_hessian(net(), X, Y, proj(), gauss_newton="no"), ValueError,
         r"gauss_newton must be True or False, got 'no'"),
    case("hessian_statistics-not-square", lambda: hessian_statistics(torch.ones(2, 3)),
         ValueError, r"H must be a square \(d, d\) matrix, got shape \(2, 3\)"),
    case("hutchinson-n_probes-float", lambda: hutchinson(net(), X, Y, n_probes=1.5),
         ValueError, r"n_probes must be an int >= 1, got 1\.5"),
    case("subspace_hessian-scales-empty", lambda: subspace_hessian(net(), X, Y, proj(), scales=[]),
         ValueError, r"scales must be a non-empty sequence of finite numbers"),
    case("subspace_hessian-scales-nan",
         lambda: subspace_hessian(net(), X, Y, proj(), scales=[float("nan")]),
         ValueError, r"scales must be a non-empty sequence of finite numbers"),
    case("i17-c07-subspace_hessian-negative-stride", _hessian_reversed, OK, check=bool),
    case("i17-c11-subspace_hessian-sparse-X", _sparse_hessian, TypeError,
         r"X is a scipy sparse matrix.*X.toarray\(\)"),
    case("i17-c12-subspace_hessian-matrix-wrong-D", lambda: subspace_hessian(
        net(), X, Y, np.ones((D + 1, 2))), ValueError, r"projection has shape \(44, 2\)"),
    case("i17-c15-hessian_statistics-0x0", lambda: hessian_statistics(np.zeros((0, 0))),
         ValueError, r"H is empty \(0 x 0\)"),
    case("i17-subspace_hessian-point-nan", lambda: subspace_hessian(
        net(), X, Y, proj(), point=torch.full((D,), float("nan"))), ValueError,
         r"point contains NaN or infinite values"),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
