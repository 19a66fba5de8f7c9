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


def test_estimates_and_standard_errors_are_the_probe_means_of_the_exact_hessian():
    # with the same Rademacher probes (a seeded torch.Generator, the documented draw), the
    # estimates are the probe means of v^T M v and |M v|^2 for the exact M, and their
    # standard errors the sample standard deviation (ddof=1) over sqrt(n_probes)
    from goldisk._rng import torch_generator

    net, X, y = tiny_problem(5, hidden=(6,))
    n_probes = 30
    est = hutchinson(net, X, y, n_probes=n_probes, random_state=11, batch_size=13)
    D = sum(p.numel() for p in net.parameters())
    V = torch.randint(0, 2, (n_probes, D), generator=torch_generator(11)).double() * 2 - 1
    for prefix, M in (("", brute_force_hessian(net, X, y)),
                      ("g_", brute_force_gauss_newton(net, X, y))):
        MV = V @ M
        for key, per_probe in (("trace", (V * MV).sum(-1)), ("frobenius2", (MV * MV).sum(-1))):
            mean, se = float(per_probe.mean()), float(per_probe.std() / n_probes**0.5)
            assert est[prefix + key] == pytest.approx(mean, rel=1e-9, abs=1e-12)
            assert est[prefix + key + "_se"] == pytest.approx(se, rel=1e-9, abs=1e-12)


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
