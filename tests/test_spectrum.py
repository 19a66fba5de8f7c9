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


# ---- trace estimators ----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_exact():
    net, X, y = tiny_problem(1, hidden=(6,))
    return net, X, y, brute_force_hessian(net, X, y), brute_force_gauss_newton(net, X, y)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
@pytest.mark.parametrize("operator", ["hessian", "ggn"])
def test_trace_within_standard_error_of_exact(tiny_exact, method, operator):
    net, X, y, H, G = tiny_exact
    exact = float(torch.trace(H if operator == "hessian" else G))
    est = goldisk.trace_estimate(net, X, y, operator=operator, method=method, n_matvecs=48,
                                 random_state=0, batch_size=13)
    assert est["n_matvecs"] == 48 and est["trace_se"] > 0
    assert abs(est["trace"] - exact) <= 4 * est["trace_se"]


def test_trace_exact_when_budget_reaches_D(tiny_exact):
    net, X, y, H, _ = tiny_exact
    est = goldisk.trace_estimate(net, X, y, method="xtrace", n_matvecs=H.shape[0])
    assert est["trace"] == pytest.approx(float(torch.trace(H)), abs=1e-12) and est["trace_se"] == 0


def test_hutchpp_and_xtrace_errors_below_hutchinson_at_equal_matvecs(tiny_exact):
    # measured over seeds (not timed) on the Gauss-Newton matrix, whose spectrum decays:
    # the sketch takes its top out of the random part (rms errors 0.060 / 0.007 / 0.003 of
    # the trace). On this net's flat, indefinite Hessian at 24 products Hutch++ is *worse*
    # (0.34 / 0.47 / 0.34): see docs/performance.md.
    net, X, y, _, G = tiny_exact
    exact = float(torch.trace(G))
    err = {m: np.sqrt(np.mean([(goldisk.trace_estimate(net, X, y, operator="ggn", method=m,
                                                       n_matvecs=48, random_state=s)["trace"]
                                - exact) ** 2 for s in range(12)]))
           for m in ("hutchinson", "hutch++", "xtrace")}
    assert err["hutch++"] < 0.5 * err["hutchinson"] and err["xtrace"] < 0.5 * err["hutchinson"]


def test_layer_curvature_matches_diagonal_blocks(tiny_exact):
    from goldisk.curvature import layer_curvature

    net, X, y, H, _ = tiny_exact
    df = layer_curvature(net, X, y, n_matvecs=1000, random_state=0, tol=1e-10)
    assert df["layer"].tolist() == ["0", "2"] and df["n_params"].tolist() == [36, 21]
    for (_, row), sl in zip(df.iterrows(), (slice(0, 36), slice(36, 57)), strict=True):
        ev = torch.linalg.eigvalsh(H[sl, sl]).numpy()
        assert row["trace"] == pytest.approx(ev.sum(), abs=1e-10)
        assert row["lambda_max"] == pytest.approx(ev[-1], abs=1e-9)
        assert row["lambda_min"] == pytest.approx(ev[0], abs=1e-9)


# ---- spectral density ------------------------------------------------------------------

@pytest.mark.parametrize("operator", ["hessian", "ggn"])
def test_slq_density_integrates_to_one_and_has_the_spectrum_moments(tiny_exact, operator):
    net, X, y, H, G = tiny_exact
    M = H if operator == "hessian" else G
    D = M.shape[0]
    df = goldisk.spectral_density(net, X, y, operator=operator, n_probes=40, n_steps=12,
                                  random_state=0, batch_size=13)
    assert np.trapezoid(df["density"], df["eigenvalue"]) == pytest.approx(1, abs=1e-9)
    nodes, weights = df.attrs["nodes"], df.attrs["weights"]
    assert np.allclose(weights.sum(1), 1)
    ev = torch.linalg.eigvalsh(M).numpy()
    for power in (1, 2, 3):  # exact per probe up to degree 2 * n_steps - 1
        per_probe = (weights * nodes ** power).sum(1)
        exact = float(np.mean(ev ** power))
        se = per_probe.std(ddof=1) / np.sqrt(len(per_probe))
        assert abs(per_probe.mean() - exact) <= 4 * se + 1e-12
    # the density's own mean (the smoothing is symmetric) is Tr(M) / D within that error
    mean = np.trapezoid(df["eigenvalue"] * df["density"], df["eigenvalue"])
    se1 = (weights * nodes).sum(1).std(ddof=1) / np.sqrt(len(nodes))
    assert abs(mean - float(torch.trace(M)) / D) <= 4 * se1


def test_slq_with_krylov_space_of_full_size_is_the_exact_spectrum(tiny_exact):
    # n_steps >= D: each probe's quadrature nodes are all eigenvalues (with weight > 0)
    net, X, y, H, _ = tiny_exact
    df = goldisk.spectral_density(net, X, y, n_probes=1, n_steps=200, random_state=0)
    ev = torch.linalg.eigvalsh(H).numpy()
    nodes = df.attrs["nodes"][0][df.attrs["weights"][0] > 1e-14]
    assert np.abs(nodes[:, None] - ev[None]).min(1).max() < 1e-8
    assert nodes.min() == pytest.approx(ev[0], abs=1e-8)
    assert nodes.max() == pytest.approx(ev[-1], abs=1e-8)


def test_plot_spectral_density(tiny_exact):
    from goldisk.curvature import plot_spectral_density

    net, X, y, _, _ = tiny_exact
    df = goldisk.spectral_density(net, X, y, n_probes=2, n_steps=8, random_state=0)
    ax = plot_spectral_density(df)
    assert len(ax.lines) == 1 and ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="columns"):
        plot_spectral_density(df.rename(columns={"density": "d"}))
