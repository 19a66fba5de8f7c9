"""Hutchinson estimates against the exact full Hessian, within their standard errors."""

import pytest
import torch
from conftest import brute_force_gauss_newton, brute_force_hessian, tiny_problem

from goldisk.curvature import hutchinson


@pytest.mark.parametrize("seed", [0, 1])
def test_estimates_within_standard_error_of_exact(seed):
    net, X, y = tiny_problem(seed, hidden=(6,))
    H = brute_force_hessian(net, X, y)
    G = brute_force_gauss_newton(net, X, y)
    est = hutchinson(net, X, y, n_probes=400, random_state=seed, batch_size=13)
    for prefix, M in (("", H), ("g_", G)):
        exact_tr, exact_f2 = float(torch.trace(M)), float((M * M).sum())
        assert abs(est[prefix + "trace"] - exact_tr) <= 4 * est[prefix + "trace_se"]
        assert abs(est[prefix + "frobenius2"] - exact_f2) <= 4 * est[prefix + "frobenius2_se"]
        assert est[prefix + "trace_se"] > 0


def test_same_seed_same_numbers_and_validation():
    net, X, y = tiny_problem(3)
    a = hutchinson(net, X, y, n_probes=5, random_state=7)
    b = hutchinson(net, X, y, n_probes=5, random_state=7)
    c = hutchinson(net, X, y, n_probes=5, random_state=8)
    assert a == b and a != c
    with pytest.raises(ValueError, match="n_probes"):
        hutchinson(net, X, y, n_probes=0)


def test_hessian_part_does_not_depend_on_gauss_newton():
    """Without G the double backward stops at the parameters; H's estimates are unchanged."""
    net, X, y = tiny_problem(4, hidden=(6,))
    with_g = hutchinson(net, X, y, n_probes=20, random_state=2, batch_size=13, chunk_size=3)
    h_only = hutchinson(net, X, y, n_probes=20, random_state=2, batch_size=13, chunk_size=3,
                        gauss_newton=False)
    assert not any(k.startswith("g_") for k in h_only)
    for key, value in h_only.items():
        assert value == pytest.approx(with_g[key], rel=1e-12), key
