"""The experiment library: training loop, bookkeeping, experiments, analyses, and a few
scientific properties of the Goldilocks zone that must hold at small scale."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from goldisk import SoftmaxTemperature, SubspaceModule, radius, reference_radius
from goldisk.curvature import hessian_statistics, model_state, subspace_hessian
from goldisk.datasets import load_digits, make_circles3
from goldisk.experiments import (
    DECOMPOSE_COLUMNS,
    SELECT_COLUMNS,
    SUBSPACE_COLUMNS,
    TRAJECTORY_COLUMNS,
    Units,
    decompose,
    fit_radius_growth,
    intrinsic_dimension,
    measure_correlations,
    point_at,
    select,
    selection_analysis,
    subspace_train,
    train,
    trajectory,
)
from goldisk.models import MLP, init_weights_
from goldisk.projections import make_projection


@pytest.fixture(scope="module")
def circles():
    ds = make_circles3(150, noise=0.1, random_state=0)
    tr, va = ds.split(0.3, random_state=0)
    return tr.X, tr.y, va.X, va.y


@pytest.fixture(scope="module")
def digits_small():
    ds = load_digits()
    return ds.X[:200], ds.y[:200]


# ---------------------------------------------------------------- training loop
def test_train_records_and_learns(circles):
    X, y, Xv, yv = circles
    net = init_weights_(MLP(2, (16,), 3), "he", generator=0)
    h = train(net, X, y, Xv, yv, lr=1e-2, epochs=4, batch_size=32)
    assert list(h["epoch"]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert h["val_acc"].between(0, 1).all() and not h["diverged"].any()
    assert {"radius", "zero_logit_frac", "confidence", "logit_grad_norm"} <= set(h.columns)


def test_train_is_seeded(circles):
    X, y, _, _ = circles
    runs = []
    for seed in (3, 3, 4):
        net = init_weights_(MLP(2, (8,), 3), "he", generator=0)
        runs.append(train(net, X, y, lr=1e-2, epochs=2, batch_size=16, random_state=seed))
    pd.testing.assert_frame_equal(runs[0], runs[1])
    assert not runs[0]["train_loss"].equals(runs[2]["train_loss"])


def test_full_batch_gd_one_step_per_epoch(circles):
    X, y, _, _ = circles
    h = train(MLP(2, (8,), 3), X, y, optimizer="gd", lr=0.1, epochs=3, batch_size=7)
    assert h["step"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fixed_radius_keeps_the_radius(circles, optimizer):
    X, y, _, _ = circles
    net = point_at(MLP(2, (16,), 3), "xavier", 0, ratio=0.3)
    r0 = radius(net)
    h = train(net, X, y, optimizer=optimizer, lr=0.05, epochs=3, batch_size=16,
              fixed_radius=True, record_every=2)
    assert np.allclose(h["radius"], r0, rtol=1e-5)
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]  # still trains on the sphere


def test_hypersphere_training_keeps_the_radius(circles):
    X, y, _, _ = circles
    net = point_at(MLP(2, (16,), 3), "xavier", 0, ratio=2.0)
    D = sum(p.numel() for p in net.parameters())
    sub = SubspaceModule(net, make_projection("dense", D, 10, random_state=0,
                                              dtype=torch.float32), "hypersphere")
    h = train(sub, X, y, lr=0.1, epochs=3, batch_size=16)
    assert np.allclose(h["radius"], radius(net), rtol=1e-5)
    with pytest.raises(ValueError, match="hypersphere"):
        train(sub, X, y, fixed_radius=True)


def test_train_rejects_bad_arguments(circles):
    X, y, _, _ = circles
    with pytest.raises(ValueError, match="optimizer"):
        train(MLP(2, (4,), 3), X, y, optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr"):
        train(MLP(2, (4,), 3), X, y, lr=0.0)


def test_point_at_radius_and_scale():
    m = MLP(64, (32,), 10, bias=False)
    net = point_at(m, "xavier", 5, ratio=0.5)
    assert radius(net) == pytest.approx(0.5 * reference_radius(m, "xavier"), rel=1e-6)
    a, b = point_at(m, "he", 5), point_at(m, "he", 5, scale=3.0)
    assert radius(b) == pytest.approx(3 * radius(a), rel=1e-6)


def test_units_skip_done_and_check_columns():
    seen = []
    u = Units(["a", "b", "c"], done={"b"}, on_result=seen.append, progress=False,
              columns=["unit", "unit_rows", "x"])
    assert u.todo == ["a", "c"] and not u.pending("b")
    u.finish("a", [{"x": 1}, {"x": 2}])
    assert seen[0][0] == {"unit": "a", "unit_rows": 2, "x": 1}
    with pytest.raises(RuntimeError, match="column"):
        u.finish("c", [{"y": 1}])


# ---------------------------------------------------------------- subspace training
@pytest.fixture(scope="module")
def subspace_df(circles):
    X, y, Xv, yv = circles
    return subspace_train(MLP(2, (16,), 3), X, y, Xv, yv, radii=[0.1, 1.0, 10.0],
                          dims=[2, 8], n_repeats=1, epochs=2, lr=0.05, progress=False,
                          random_state=0)


def test_subspace_train_structure(subspace_df):
    df = subspace_df
    assert list(df.columns) == SUBSPACE_COLUMNS
    assert len(df) == 3 * (1 + 2 * 2)
    assert df["unit"].is_unique and (df["unit_rows"] == 1).all()
    assert df["val_acc"].between(0, 1).all()
    sphere = df[df["kind"] == "hypersphere"]
    assert np.allclose(sphere["final_radius"], sphere["radius"], rtol=1e-5)
    assert (df.loc[df["kind"] == "full", "dim"] == df["D"].iloc[0]).all()


def test_subspace_train_resume_gives_the_same_rows(circles, subspace_df):
    X, y, Xv, yv = circles
    done = set(subspace_df["unit"].iloc[::2])
    rest = subspace_train(MLP(2, (16,), 3), X, y, Xv, yv, radii=[0.1, 1.0, 10.0],
                          dims=[2, 8], n_repeats=1, epochs=2, lr=0.05, progress=False,
                          random_state=0, done=done)
    assert set(rest["unit"]) == set(subspace_df["unit"]) - done
    ref = subspace_df.set_index("unit").loc[rest["unit"]].reset_index()
    cols = ["val_acc", "train_loss", "final_radius"]
    np.testing.assert_allclose(rest[cols].to_numpy(float), ref[cols].to_numpy(float))


def test_intrinsic_dimension_monotone_in_threshold(subspace_df):
    thresholds = np.linspace(0.2, 1.0, 17)
    for relative in (True, False):
        tabs = [intrinsic_dimension(subspace_df, t, relative=relative) for t in thresholds]
        d = np.stack([t.sort_values(["kind", "radius_ratio"])["d_int"].to_numpy() for t in tabs])
        d = np.where(np.isnan(d), np.inf, d)
        assert (d[1:] >= d[:-1]).all()


def test_intrinsic_dimension_interpolation_and_unreached():
    df = pd.DataFrame({"kind": "hyperplane", "radius_ratio": 1.0, "dim": [10, 100, 1000],
                       "val_acc": [0.2, 0.6, 0.8]})
    out = intrinsic_dimension(df, 0.7, relative=False)
    assert out["d_int"].iloc[0] == pytest.approx(10**2.5)
    assert intrinsic_dimension(df, 0.1, relative=False)["d_int"].iloc[0] == 10
    unreached = intrinsic_dimension(df, 0.9, relative=False)
    assert math.isnan(unreached["d_int"].iloc[0]) and not unreached["reached"].iloc[0]
    rel = intrinsic_dimension(df, 0.5, relative=True, baseline=1.2)
    assert rel["level"].iloc[0] == pytest.approx(0.6) and rel["d_int"].iloc[0] == 100
    with pytest.raises(ValueError, match="baseline"):
        intrinsic_dimension(df, 0.9)


# ---------------------------------------------------------------- select
def test_select_structure_and_common_shuffling(circles):
    X, y, Xv, yv = circles
    df = select(MLP(2, (8,), 3), X, y, Xv, yv, n_inits=4, dim=5, epochs=2, progress=False)
    assert list(df.columns) == SELECT_COLUMNS
    assert len(df) == 4 * 3 and df.groupby("unit")["unit_rows"].first().eq(3).all()
    per_init = df.drop_duplicates("init")
    assert per_init["trace_ratio"].abs().le(math.sqrt(5) + 1e-9).all()
    assert per_init["frac_positive"].between(0, 1).all()
    assert np.allclose(per_init["radius"], per_init["reference_radius"])
    _check_correlations(measure_correlations(df), per_init)


def _check_correlations(corr, inits):
    """Every row of ``measure_correlations`` against numpy: Pearson = ``corrcoef``,
    Spearman = ``corrcoef`` of the ranks (average ranks for ties)."""
    assert len(corr) > 0
    for row in corr.itertuples():
        x, y = inits[row.a].to_numpy(float), inits[row.b].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        assert row.n == ok.sum()
        assert row.pearson_r == pytest.approx(np.corrcoef(x[ok], y[ok])[0, 1], abs=1e-12)
        rx, ry = pd.Series(x[ok]).rank().to_numpy(), pd.Series(y[ok]).rank().to_numpy()
        assert row.spearman_r == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-12)


def test_measure_correlations_against_numpy():
    rng = np.random.default_rng(3)
    n = 12
    a = rng.normal(size=n)
    df = pd.DataFrame({"init": np.repeat(np.arange(n), 2),  # two epochs per init
                       "trace_ratio": np.repeat(a, 2),
                       "init_loss": np.repeat(-2 * a + 0.3 * rng.normal(size=n), 2),
                       "frac_positive": np.repeat(np.r_[np.nan, rng.normal(size=n - 1)], 2)})
    corr = measure_correlations(df, ["trace_ratio", "init_loss", "frac_positive"])
    assert len(corr) == 3 and corr.loc[0, "pearson_r"] < -0.9  # built anti-correlated
    assert corr.loc[1, "n"] == n - 1  # the NaN init is left out of that pair
    _check_correlations(corr, df.drop_duplicates("init"))
    const = df.assign(init_loss=1.0)  # a correlation with a constant is undefined: no row
    assert len(measure_correlations(const, ["trace_ratio", "init_loss"])) == 0


def test_selection_analysis_recovers_a_known_slope():
    rng = np.random.default_rng(1)
    n = 80
    m = rng.normal(size=n)
    rows = [{"init": i, "epoch": e, "trace_ratio": m[i], "init_loss": -m[i],
             "val_acc": 0.5 + (0.05 * m[i] if e == 1 else 0.0) + 0.01 * rng.normal()}
            for i in range(n) for e in (1, 2)]
    an = selection_analysis(pd.DataFrame(rows), measures={"trace_ratio": 1, "init_loss": -1},
                            n_permutations=199, random_state=0)
    e1 = an[(an["epoch"] == 1) & (an["measure"] == "trace_ratio")].iloc[0]
    assert e1["ci_low"] < 0.05 < e1["ci_high"] and e1["p_welch"] < 1e-6
    assert e1["p_perm"] == pytest.approx(1 / 200)  # nothing as extreme among 199 shuffles
    lo = an[(an["epoch"] == 1) & (an["measure"] == "init_loss")].iloc[0]
    assert lo["diff"] > 0  # lowest loss is selected, i.e. the largest m
    e2 = an[(an["epoch"] == 2) & (an["measure"] == "trace_ratio")].iloc[0]
    assert e2["p_slope"] > 1e-3


# ---------------------------------------------------------------- trajectory
def test_trajectory_radius_grows_from_small_and_stays_from_large(circles):
    X, y, Xv, yv = circles
    df = trajectory(MLP(2, (32,), 3), X, y, Xv, yv, radii=[0.03, 10.0], epochs=3, lr=1e-2,
                    n_repeats=1, records_per_epoch=2, progress=False)
    assert list(df.columns) == TRAJECTORY_COLUMNS
    last = df.sort_values("step").groupby(["mode", "radius_ratio"]).tail(1)
    free = last[last["mode"] == "free"].set_index("radius_ratio")["radius_over_ref"]
    assert free[0.03] > 3 * 0.03  # drawn out of the small-radius region
    assert abs(free[10.0] / 10.0 - 1) < 0.05  # barely moves from a large radius
    fixed = df[df["mode"] == "fixed"]
    assert np.allclose(fixed["radius_over_ref"], fixed["radius_ratio"], rtol=1e-5)


def test_fit_radius_growth_on_a_square_root_law():
    t = np.arange(0, 401, 10)
    df = pd.DataFrame({"mode": "free", "repeat": 0, "radius_ratio": 0.01, "step": t,
                       "radius": 0.05 + 0.3 * np.sqrt(t), "reference_radius": 3.0, "D": 100,
                       "lr": 1e-3})
    fit = fit_radius_growth(df).iloc[0]
    assert fit["a"] == pytest.approx(0.05) and fit["b"] == pytest.approx(0.3)
    assert fit["r2_sqrt"] == pytest.approx(1.0)
    assert fit["exponent"] == pytest.approx(0.5, abs=0.05)
    assert fit["c_walk"] == pytest.approx(1e-4)


# ---------------------------------------------------------------- decompose
def test_decompose_structure(circles):
    X, y, Xv, yv = circles
    df = decompose(MLP(2, (8, 8), 3, bias=False), X, y, Xv, yv, alphas=[0.1, 1.0], dim=4,
                   n_subspaces=1, n_inits=3, init_dim=3, train_alphas=[0.5], steps=4,
                   records=2, progress=False)
    assert list(df.columns) == DECOMPOSE_COLUMNS
    assert df.groupby("part").size().to_dict() == {"inits": 3, "scale": 2, "temperature": 2,
                                                   "training": 2 * 3}
    sc = df[df["part"] == "scale"]
    assert (sc["g_eig_min"] >= -1e-12 * sc["g_eig_max"].abs()).all()  # G is PSD
    np.testing.assert_allclose(sc["trace"], sc["g_trace"] + sc["h_trace"], rtol=1e-9)
    gd = df[(df["part"] == "training") & (df["optimizer"] == "gd")]
    assert gd["lr"].iloc[0] == pytest.approx(0.1 / 0.5)  # lr0 / alpha^(L-2) with L = 3
    assert (df["depth"] == 3).all() and df["homogeneous"].all()


def test_temperature_recreates_the_zone_for_homogeneous_nets(digits_small):
    X, y = digits_small
    net = point_at(MLP(64, (16, 16), 10, bias=False), "he", 0)
    L = net.depth
    D = sum(p.numel() for p in net.parameters())
    P = make_projection("dense", D, 12, random_state=1)
    alphas = [0.3, 1.0, 3.0, 10.0]
    scaled = subspace_hessian(net, X, y, P, scales=alphas)
    for k, a in enumerate(alphas):
        hot = subspace_hessian(SoftmaxTemperature(net, a ** (-L)), X, y, P)
        s, t = hessian_statistics(scaled.H[k]), hessian_statistics(hot.H)
        assert abs(s["trace_ratio"] - t["trace_ratio"]) < 1e-8
        assert s["frac_positive"] == t["frac_positive"]
        # the overall factor: H at scale alpha is H at temperature alpha^-L over alpha^2
        torch.testing.assert_close(scaled.H[k] * a**2, hot.H, rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(scaled.G[k] * a**2, hot.G, rtol=1e-8, atol=1e-12)
        assert float(scaled.loss[k]) == pytest.approx(float(hot.loss), rel=1e-10)


@pytest.mark.parametrize("hidden", [(16,), (16, 16)])
def test_loss_grows_as_r_to_the_depth_at_large_radius(digits_small, hidden):
    X, y = digits_small
    net = point_at(MLP(64, hidden, 10, bias=False), "xavier", 0)
    r_ref = reference_radius(net)
    ratios = np.logspace(2, 4, 5)
    losses = []
    for rho in ratios:
        probe = point_at(MLP(64, hidden, 10, bias=False), "xavier", 0, ratio=rho)
        losses.append(model_state(probe, X, y)["loss"])
    slope = np.polyfit(np.log(ratios * r_ref), np.log(losses), 1)[0]
    assert slope == pytest.approx(net.depth, rel=0.1)


def test_gauss_newton_vanishes_as_alpha_to_the_depth_at_small_scale(digits_small):
    """||G|| / ||H-term|| ~ alpha^L below the zone (logits ~ alpha^L, J ~ alpha^(L-1))."""
    X, y = digits_small
    net = point_at(MLP(64, (16, 16), 10, bias=False), "he", 0)
    D = sum(p.numel() for p in net.parameters())
    P = make_projection("dense", D, 10, random_state=0)
    alphas = np.array([1e-3, 1e-2])
    res = subspace_hessian(net, X, y, P, scales=alphas)
    ratio = [float(torch.linalg.matrix_norm(res.G[k]) / torch.linalg.matrix_norm(res.Hterm[k]))
             for k in range(2)]
    slope = np.log(ratio[1] / ratio[0]) / np.log(alphas[1] / alphas[0])
    assert slope == pytest.approx(net.depth, rel=0.05)
    # below the zone the curvature is the H-term's: no positive excess
    st = hessian_statistics(res.H[0])
    assert abs(st["trace_ratio"]) < 1.0


def test_training_protocol_is_the_keywords_and_validated_once(circles):
    """``training=Training(...)`` gives the rows the same keywords give; a keyword
    overrides the object's field; bad settings and unknown keywords fail at entry."""
    from goldisk.experiments import RunHooks, Training

    X, y, Xv, yv = circles
    net = MLP(2, (8,), 3)
    common = dict(radii=[0.5], modes=["free"], n_repeats=1, records_per_epoch=1)
    by_kw = trajectory(net, X, y, Xv, yv, epochs=2, lr=1e-2, progress=False, **common)
    by_obj = trajectory(net, X, y, Xv, yv, training=Training(epochs=2, lr=1e-2),
                        progress=False, **common)
    pd.testing.assert_frame_equal(by_kw, by_obj)
    over = trajectory(net, X, y, Xv, yv, training=Training(epochs=2, lr=1e-2), lr=3e-2,
                      progress=False, **common)
    assert set(over["lr"]) == {3e-2} and over["epoch"].max() == 2
    with pytest.raises(ValueError, match="optimizer must be one of"):
        Training(optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        trajectory(net, X, y, Xv, yv, lr=-1.0, progress=False, **common)
    with pytest.raises(TypeError, match="unexpected keyword argument 'seed'"):
        trajectory(net, X, y, Xv, yv, seed=1, progress=False, **common)
    with pytest.raises(TypeError, match="training must be a goldisk.experiments.Training"):
        trajectory(net, X, y, Xv, yv, training={"lr": 1e-2}, progress=False, **common)
    assert RunHooks().random_state == 0 and RunHooks().progress is True
