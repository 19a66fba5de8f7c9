"""Full-space spectrum: Lanczos, SLQ and trace estimators against brute-force float64."""

import numpy as np
import pytest
import torch
from conftest import brute_force_gauss_newton, brute_force_hessian, tiny_problem

import goldisk
from goldisk.curvature import top_eigenvalues


@pytest.fixture(scope="module")
def problem():
    net, X, y = tiny_problem(0, hidden=(6,))
    return net, X, y, {"hessian": torch.linalg.eigvalsh(brute_force_hessian(net, X, y)).numpy(),
                       "ggn": torch.linalg.eigvalsh(brute_force_gauss_newton(net, X, y)).numpy()}


@pytest.mark.parametrize("operator", ["hessian", "ggn"])
@pytest.mark.parametrize("which", ["largest", "smallest"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_top_eigenvalues_match_eigvalsh(problem, operator, which, k):
    net, X, y, ev = problem
    lam, info = top_eigenvalues(net, X, y, k=k, operator=operator, which=which, tol=1e-10,
                                random_state=k, batch_size=13, return_info=True)
    ref = ev[operator][::-1][:k] if which == "largest" else ev[operator][:k][::-1]
    assert info["converged"]
    assert lam.shape == (k,) and np.all(np.diff(lam) <= 0)
    np.testing.assert_allclose(lam, ref, rtol=0, atol=1e-8 * np.abs(ev[operator]).max())
    assert len(info["residuals"]) == k and info["n_matvecs"] >= k


def test_both_ends_and_exported(problem):
    net, X, y, ev = problem
    lam = goldisk.top_eigenvalues(net, X, y, k=3, which="both", tol=1e-10, random_state=0)
    ref = np.concatenate([ev["hessian"][::-1][:3], ev["hessian"][:3][::-1]])
    np.testing.assert_allclose(lam, ref, atol=1e-8 * np.abs(ev["hessian"]).max())


def test_lambda_max_of_a_layer_is_that_of_its_diagonal_block():
    net, X, y = tiny_problem(2, hidden=(6,))
    H = brute_force_hessian(net, X, y)
    block = H[:36, :36]  # "0.weight" (6 x 5) and "0.bias" (6)
    lam = top_eigenvalues(net, X, y, k=2, parameters="0", tol=1e-10, random_state=0)
    np.testing.assert_allclose(lam, torch.linalg.eigvalsh(block).numpy()[::-1][:2], atol=1e-9)


def test_non_convergence_warns_and_is_reported(problem):
    net, X, y, _ = problem
    with pytest.warns(RuntimeWarning, match="did not converge"):
        _, info = top_eigenvalues(net, X, y, k=3, which="smallest", operator="ggn",
                                  max_iter=5, random_state=0, return_info=True)
    assert not info["converged"] and info["n_matvecs"] <= 5


def test_seeded_and_bad_input(problem):
    net, X, y, _ = problem
    a = top_eigenvalues(net, X, y, k=2, random_state=3, tol=1e-3)
    b = top_eigenvalues(net, X, y, k=2, random_state=3, tol=1e-3)
    assert np.array_equal(a, b)
    for kw, match in (({"k": 0}, "k must"), ({"which": "top"}, "which must"),
                      ({"operator": "fisher"}, "operator must"), ({"tol": -1}, "tol must"),
                      ({"max_iter": 0}, "max_iter must"), ({"k": 1000}, "k=1000"),
                      ({"parameters": "nope"}, "match no trainable")):
        with pytest.raises(ValueError, match=match):
            top_eigenvalues(net, X, y, **kw)
