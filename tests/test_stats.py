"""Curvature statistics (goldisk/curvature/_stats.py) against direct numpy computations."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from goldisk.curvature import hessian_statistics

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


square = st.integers(1, 12).map(lambda n: (n, n))


@given(arrays(np.float64, square, elements=finite))
def test_statistics_match_numpy_and_bounds(a):
    H = (a + a.T) / 2
    frob = np.linalg.norm(H)
    if frob == 0:
        return
    s = hessian_statistics(torch.from_numpy(a))
    eig = np.linalg.eigvalsh(H)
    d = H.shape[0]
    assert s["trace"] == pytest.approx(np.trace(H), abs=1e-9 * (1 + frob))
    assert s["frobenius"] == pytest.approx(frob, rel=1e-12)
    assert -math.sqrt(d) - 1e-9 <= s["trace_ratio"] <= math.sqrt(d) + 1e-9
    assert s["trace_ratio"] == pytest.approx(np.trace(H) / frob, abs=1e-9 * (1 + math.sqrt(d)))
    tol = d * np.finfo(np.float64).eps * np.abs(eig).max()
    clear = np.abs(eig) > 10 * tol  # eigenvalues near round-off may go either way
    assert (eig > 10 * tol).sum() / d <= s["frac_positive"] <= ((eig > 0) | ~clear).sum() / d
    assert s["eig_min"] == pytest.approx(eig[0], abs=1e-9 * (1 + frob))
    assert s["eig_max"] == pytest.approx(eig[-1], abs=1e-9 * (1 + frob))


@given(arrays(np.float64, (5, 5), elements=finite), st.floats(1e-3, 1e3))
def test_trace_ratio_is_scale_invariant(a, c):
    H = torch.from_numpy(a + a.T)
    if float(H.norm()) == 0:
        return
    s1, s2 = hessian_statistics(H), hessian_statistics(c * H)
    assert s1["trace_ratio"] == pytest.approx(s2["trace_ratio"], rel=1e-9, abs=1e-12)
    assert s1["frac_positive"] == s2["frac_positive"]


def test_zero_matrix_gives_nan_ratio_with_warning():
    with pytest.warns(RuntimeWarning, match=r"\|\|H\|\|_F = 0"):
        s = hessian_statistics(torch.zeros(3, 3))
    assert math.isnan(s["trace_ratio"]) and s["trace"] == 0.0


def test_prefix():
    assert set(hessian_statistics(torch.eye(2), "g_")) == {
        "g_trace", "g_frobenius", "g_trace_ratio", "g_frac_positive", "g_eig_min", "g_eig_max"}


def test_batch_statistics_of_a_mixed_stack_match_numpy_row_by_row():
    # one finite matrix, one with an inf entry, an all-zero one and another finite one:
    # the finite rows are numpy's values, whatever their neighbours; the others are NaN
    # exactly where a statistic is undefined
    from goldisk.curvature._stats import batch_statistics

    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    bad = a.copy()
    bad[1, 2] = np.inf
    stack = torch.from_numpy(np.stack([a, bad, np.zeros((4, 4)), b]))
    s = batch_statistics(stack)
    for i, m in ((0, a), (3, b)):
        h = (m + m.T) / 2
        eig = np.linalg.eigvalsh(h)
        assert s["trace"][i] == pytest.approx(np.trace(h), abs=1e-12)
        assert s["frobenius"][i] == pytest.approx(np.linalg.norm(h), rel=1e-12)
        assert s["trace_ratio"][i] == pytest.approx(np.trace(h) / np.linalg.norm(h), rel=1e-12)
        assert s["frac_positive"][i] == (eig > 0).mean()
        assert (s["eig_min"][i], s["eig_max"][i]) == pytest.approx((eig[0], eig[-1]), abs=1e-12)
    assert all(np.isnan(s[k][1]) for k in ("trace_ratio", "frac_positive", "eig_min", "eig_max"))
    assert s["trace"][2] == 0 and s["frobenius"][2] == 0 and np.isnan(s["trace_ratio"][2])
    assert s["eig_min"][2] == 0 and s["eig_max"][2] == 0
