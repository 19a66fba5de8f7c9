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


# ---- probe columns, callback --------------------------------------------------------

def test_probe_sharpness_columns_are_the_full_space_extremes():
    from goldisk.estimators import SCORES, CurvatureProbe

    net, X, y = tiny_problem(3, hidden=(6,))
    ev = torch.linalg.eigvalsh(brute_force_hessian(net, X, y)).numpy()
    g = torch.linalg.eigvalsh(brute_force_gauss_newton(net, X, y)).numpy()
    probe = CurvatureProbe(dim=4, n_subspaces=2, random_state=0, sharpness=True,
                           statistic="lambda_max")
    table = probe.measure(net, X.numpy(), y.numpy())
    assert {"lambda_max", "lambda_min", "ggn_lambda_max"} <= set(SCORES)
    assert table["lambda_max"].tolist() == [pytest.approx(ev[-1], rel=1e-8)] * 2
    assert table["lambda_min"].iloc[0] == pytest.approx(ev[0], rel=1e-8)
    assert table["ggn_lambda_max"].iloc[0] == pytest.approx(g[-1], rel=1e-8)
    assert probe(net, X.numpy(), y.numpy()) == pytest.approx(ev[-1], rel=1e-8)
    # opt-in: absent by default; asked for as columns alone, no subspace Hessian is needed
    assert "lambda_max" not in CurvatureProbe(dim=4, random_state=0).measure(net, X, y)
    only = CurvatureProbe(dim=4, random_state=0)._measure(net, X, y, "cross_entropy",
                                                          columns=["lambda_max"])
    assert only["lambda_max"].iloc[0] == pytest.approx(ev[-1], rel=1e-8)
    with pytest.raises(ValueError, match="sharpness must be"):
        CurvatureProbe(sharpness="yes").measure(net, X, y)


def test_sharpness_tracker_records_lambda_max_of_the_trained_module():
    from goldisk import GoldilocksClassifier
    from goldisk.callbacks import SharpnessTracker
    from goldisk.models import MLP

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    tracker = SharpnessTracker(every=2, max_samples=50, tol=1e-10, record_edge=True)
    net = GoldilocksClassifier(MLP, module__hidden=(6,), max_epochs=4, lr=0.05,
                               random_state=0, callbacks=[tracker]).fit(X, y)
    rec = [h.get("lambda_max") for h in net.history]
    assert rec[0] is None and rec[2] is None and rec[1] is not None and rec[3] is not None
    module = net.module_.double()
    Xs = torch.as_tensor(X[:50]).float().double()  # as the net feeds it
    H = brute_force_hessian(module, Xs, torch.as_tensor(y[:50]))
    lam = float(torch.linalg.eigvalsh(H)[-1])
    assert rec[3] == pytest.approx(lam, rel=1e-8)
    assert net.history[-1, "lambda_max_edge"] == pytest.approx(0.05 * lam / 2, rel=1e-8)
    with pytest.raises(ValueError, match="every must"):
        GoldilocksClassifier(MLP, module__hidden=(6,), max_epochs=1,
                             callbacks=[SharpnessTracker(every=0)]).fit(X, y)


# ---- the same statistics for the subspace Hessian --------------------------------------

def test_subspace_result_spectrum_statistics():
    from goldisk.curvature import eigen_statistics, subspace_hessian
    from goldisk.projections import make_projection

    net, X, y = tiny_problem(4, hidden=(6,))
    H = brute_force_hessian(net, X, y)
    P = make_projection("dense", D=H.shape[0], d=8, random_state=0)
    res = subspace_hessian(net, X, y, P)
    Pm = P.columns(0, 8).T  # (D, d)
    ev = torch.linalg.eigvalsh(Pm.T @ H @ Pm).numpy()
    np.testing.assert_allclose(res.top_eigenvalues(3), ev[::-1][:3], atol=1e-10)
    np.testing.assert_allclose(res.top_eigenvalues(2, which="both"),
                               [ev[-1], ev[-2], ev[1], ev[0]], atol=1e-10)
    assert res.top_eigenvalues(1, operator="ggn")[0] >= 0
    stats = eigen_statistics(res.H, k=2, prefix="s_")
    assert stats["s_lambda_max"] == pytest.approx(ev[-1], abs=1e-10)
    assert stats["s_lambda_min_2"] == pytest.approx(ev[1], abs=1e-10)
    df = res.spectral_density()
    assert np.trapezoid(df["density"], df["eigenvalue"]) == pytest.approx(1, abs=1e-12)
    mean = np.trapezoid(df["eigenvalue"] * df["density"], df["eigenvalue"])
    assert mean == pytest.approx(ev.mean(), abs=1e-6 * np.abs(ev).max())
    with pytest.raises(ValueError, match="k must"):
        res.top_eigenvalues(9)


# ---- CLI ------------------------------------------------------------------------------

def test_cli_spectrum_outputs_and_resume(tmp_path, capsys):
    import pandas as pd

    from goldisk.cli import main

    out = tmp_path / "spec"
    args = ["spectrum", "--dataset", "circles", "--max-samples", "80", "--hidden", "6",
            "--no-progress", "--radii", "0.3,1,3", "--density-radii", "1", "--k", "2",
            "--n-probes", "2", "--n-steps", "10", "--tol", "1e-10", "--out", str(out)]
    assert main(args) == 0
    eig = pd.read_csv(out / "eigenvalues.csv")
    dens = pd.read_csv(out / "density.csv")
    assert (out / "spectrum.png").exists()
    assert len(eig) == 3 * 2 * 4 and eig["converged"].all()
    g = eig[eig["operator"] == "ggn"]
    assert (g["eigenvalue"] >= -1e-10 * g["eigenvalue"].abs().max()).all()  # G is PSD
    for _, d in dens.groupby("operator"):
        assert np.trapezoid(d["density"], d["eigenvalue"]) == pytest.approx(1, abs=1e-9)
    # a run killed after the first radius: --resume redoes the rest, identically
    text = (out / "eigenvalues.csv").read_text().splitlines(keepends=True)
    (out / "eigenvalues.csv").write_text("".join(text[:9]) + text[9][:10])
    assert main(args + ["--resume"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "eigenvalues.csv"), eig)
    assert main(args + ["--resume", "--k", "3"]) == 2  # other settings are refused
    assert main(args[:-2] + ["--operators", "fisher", "--out", str(tmp_path / "x")]) == 2
    assert "--operators must be" in capsys.readouterr().err


@pytest.mark.parametrize("operator", ["hessian", "ggn"])
def test_batched_products_equal_the_loop(tiny_exact, operator, monkeypatch):
    # blocks go through one batched double backward on GPUs (LOOP_MAX = 0 forces it here)
    from goldisk.curvature import _operator, _reverse
    from goldisk.curvature._operator import CurvatureOperator

    net, X, y, H, G = tiny_exact
    V = torch.randn(5, H.shape[0], generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    loop = CurvatureOperator(net, X, y, operator=operator, batch_size=13).matmat(V)
    monkeypatch.setattr(_operator, "LOOP_MAX", 0)
    monkeypatch.setattr(_reverse, "LOOP_MAX", 0)
    batched = CurvatureOperator(net, X, y, operator=operator, batch_size=13).matmat(V)
    exact = V @ (H if operator == "hessian" else G)
    torch.testing.assert_close(loop, exact, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(batched, exact, rtol=1e-10, atol=1e-12)


def test_products_without_kept_graphs_are_the_same(tiny_exact, monkeypatch):
    # past the memory budget every product rebuilds the mini-batch graphs
    from goldisk.curvature import _operator

    net, X, y, H, _ = tiny_exact
    monkeypatch.setattr(_operator, "GRAPH_BUDGET_BYTES", 0)
    op = _operator.CurvatureOperator(net, X, y, batch_size=13)
    assert op._graphs is None
    v = torch.ones(H.shape[0], dtype=torch.float64)
    torch.testing.assert_close(op.matmat(v), H @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.matmat(v), H @ v, rtol=1e-10, atol=1e-12)
    assert op.n_matvecs == 2


def test_benchmark_exact_trace_is_the_hessian_trace_for_relu_mlps():
    # bench_spectrum's reference: the H-term's diagonal blocks vanish for a ReLU MLP
    import importlib.util
    import sys
    from pathlib import Path

    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench_dir))
    try:
        spec = importlib.util.spec_from_file_location("bench_spectrum",
                                                      bench_dir / "bench_spectrum.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(bench_dir))
    net, X, y = tiny_problem(6, hidden=(7, 5), act="relu")
    H = brute_force_hessian(net, X, y)
    assert bench.exact_trace(net, X, y, chunk=7) == pytest.approx(float(torch.trace(H)),
                                                                   rel=1e-10)
    G = brute_force_gauss_newton(net, X, y)
    assert float(torch.trace(H - G)) == pytest.approx(0, abs=1e-12)


def test_cli_spectrum_help_states_every_default():
    import argparse

    from goldisk.cli import _subparser, build_parser

    sub = _subparser(build_parser(), "spectrum")
    for action in sub._actions:
        if action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            continue
        assert str(action.default) in sub._get_formatter()._expand_help(action)
