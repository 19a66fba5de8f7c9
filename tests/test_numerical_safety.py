"""Numerical safety: extreme radii, saturated softmax, float64 Hessians, overflow during
training, and stochastic layers."""

from __future__ import annotations

import copy
import inspect
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from goldisk import (
    CurvatureProbe,
    GoldilocksClassifier,
    InitScaler,
    hessian_statistics,
    hutchinson,
    model_state,
    rescale_,
    subspace_hessian,
)
from goldisk.callbacks import NonFiniteStopper, NonFiniteTrainingError
from goldisk.curvature import per_sample_loss
from goldisk.datasets import load_digits
from goldisk.models import MLP
from goldisk.projections import make_projection
from goldisk.sweep import radius_sweep

EXTREME = [1e-4, 1e-2, 1.0, 1e2, 1e4]
STATS = ["trace", "frobenius", "trace_ratio", "frac_positive", "eig_min", "eig_max"]


@pytest.fixture(scope="module")
def digits():
    ds = load_digits()
    return ds.X[:60], ds.y[:60]


@pytest.fixture(scope="module")
def extreme_sweep(digits):
    """A sweep from 1e-4 to 1e4 times the Xavier radius, with the warnings it raised."""
    X, y = digits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = radius_sweep(MLP(64, (8,), 10), X, y, radii=EXTREME, dims=(3, 6), n_subspaces=2,
                          max_samples=None, progress=False, random_state=0)
    runtime = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return df, runtime


def _nan_columns(df: pd.DataFrame) -> list[str]:
    cols = [p + s for p in ("", "g_", "h_") for s in STATS]
    return [c for c in cols if df[c].isna().any()]


def test_extreme_radii_statistics_are_finite_or_nan_never_inf(extreme_sweep):
    df, _ = extreme_sweep
    assert sorted(set(df["radius_ratio"])) == EXTREME and len(df) == 5 * 2 * 2
    cols = [p + s for p in ("", "g_", "h_") for s in STATS]
    values = df[cols].to_numpy(dtype=float)
    assert not np.isinf(values).any()
    # the full Hessian's statistics and the state are finite at every radius
    for col in STATS + ["loss", "confidence", "entropy", "logit_grad_norm"]:
        assert np.isfinite(df[col]).all(), col
    bound = np.sqrt(df["dim"].to_numpy())
    assert (np.abs(df["trace_ratio"]) <= bound + 1e-12).all()
    # NaN only where the softmax saturates: d^2 loss / dz^2 = diag(p) - p p^T = 0 exactly,
    # so the Gauss-Newton part G vanishes and its trace ratio is 0/0
    nan_rows = df[df["g_trace_ratio"].isna()]
    assert set(nan_rows["radius_ratio"]) <= {1e2, 1e4}
    assert (nan_rows["g_frobenius"] == 0).all() and (nan_rows["confidence"] == 1.0).all()
    assert set(_nan_columns(df)) <= {"g_trace_ratio"}


def test_losses_are_finite_log_softmax_at_1e4_times_the_reference_radius(extreme_sweep):
    df, _ = extreme_sweep
    far = df[df["radius_ratio"] == 1e4]
    assert np.isfinite(far["loss"]).all() and (far["loss"] > 1e6).all()
    # logsumexp-based cross-entropy: exact where a naive log(softmax) gives inf or nan
    z = torch.tensor([[1e300, -1e300, 0.0], [0.0, 800.0, -800.0]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    loss = per_sample_loss(z, y)
    assert torch.isfinite(loss).all()
    assert loss.tolist() == pytest.approx([2e300, 800.0])
    naive = -torch.log(torch.softmax(z, -1)).gather(1, y[:, None])
    assert not torch.isfinite(naive).all()
    # the nets train with CrossEntropyLoss on logits (log-softmax inside)
    assert GoldilocksClassifier(MLP).criterion is torch.nn.CrossEntropyLoss


def test_every_nan_in_a_sweep_comes_with_a_runtime_warning(extreme_sweep):
    df, runtime = extreme_sweep
    assert _nan_columns(df), "the extreme sweep is expected to produce a NaN"
    assert any("= 0" in m for m in runtime), runtime


def test_probe_says_why_a_statistic_is_nan(digits):
    X, y = digits
    net = MLP(64, (8,), 10).double()
    rescale_(net, 1e4 * 10.0)
    with pytest.warns(RuntimeWarning, match=r"\|\|G\|\|_F = 0 .*: g_trace_ratio is NaN"):
        table = CurvatureProbe(dim=4, n_subspaces=1, random_state=0).measure(net, X, y)
    assert table["g_trace_ratio"].isna().all() and (table["g_frobenius"] == 0).all()
    assert np.isfinite(table[["trace", "trace_ratio", "loss"]].to_numpy()).all()


def test_flat_loss_gives_nan_trace_ratio_with_the_reason():
    # a linear model that classifies every sample with a margin of 1e4 logits: the softmax
    # is exactly one-hot in float64, the loss is exactly flat, H = 0
    net = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(1e4 * torch.eye(2, dtype=torch.float64))
    X, y = torch.eye(2, dtype=torch.float64), torch.tensor([0, 1])
    res = subspace_hessian(net, X, y, make_projection("dense", 4, 2, random_state=0))
    assert float(res.H.abs().max()) == 0.0
    with pytest.warns(RuntimeWarning, match=r"\|\|H\|\|_F = 0 .*trace_ratio is NaN"):
        stats = hessian_statistics(res.H)
    assert math.isnan(stats["trace_ratio"]) and stats["trace"] == 0.0
    assert model_state(net, X, y)["loss"] == 0.0


def test_hessians_are_float64_by_default(digits):
    X, y = digits
    net = MLP(64, (6,), 10)  # float32 parameters
    assert next(net.parameters()).dtype == torch.float32
    P = make_projection("dense", sum(p.numel() for p in net.parameters()), 3, random_state=0)
    assert P.dtype == torch.float64
    res = subspace_hessian(net, X, y, P)
    assert res.H.dtype == res.G.dtype == res.loss.dtype == torch.float64
    assert next(net.parameters()).dtype == torch.float32  # the caller's model is untouched
    for fn in (subspace_hessian, hutchinson, model_state, radius_sweep):
        assert inspect.signature(fn).parameters["dtype"].default is torch.float64, fn
    assert CurvatureProbe().dtype == "float64"
    from goldisk.cli import build_parser

    args = build_parser().parse_args(["sweep"])
    assert args.float32 is False


def test_overflow_during_training_stops_with_a_clear_message(digits):
    X, y = digits
    # no callback given: the nets carry a NonFiniteStopper by default
    net = GoldilocksClassifier(MLP, module__hidden=(8,), optimizer=torch.optim.SGD, lr=1e30,
                               max_epochs=3, random_state=0)
    msg = r"non-finite in epoch \d; the initialization radius.*lr=1e\+30"
    with pytest.raises(NonFiniteTrainingError, match=msg):
        net.fit(X, y)
    huge = GoldilocksClassifier(MLP, module__hidden=(8,), max_epochs=2, random_state=0,
                                init_scaler=InitScaler(radius=1e30))
    with pytest.raises(NonFiniteTrainingError, match=r"init_scaler__radius=1e\+30"):
        huge.fit(X, y)
    # "stop" keeps the net and says why
    stop = GoldilocksClassifier(MLP, module__hidden=(8,), optimizer=torch.optim.SGD, lr=1e30,
                                max_epochs=3, random_state=0,
                                callbacks=[NonFiniteStopper(on_nonfinite="stop")])
    with pytest.warns(RuntimeWarning, match="Training stopped"):
        stop.fit(X, y)
    assert stop.history[-1, "nonfinite"] is True and len(stop.history) < 3
    # without the stopper the same fit silently ends with NaN weights
    silent = GoldilocksClassifier(MLP, module__hidden=(8,), optimizer=torch.optim.SGD,
                                  lr=1e30, max_epochs=3, random_state=0,
                                  callbacks__nonfinite_stopper=None).fit(X, y)
    assert not all(bool(torch.isfinite(p).all()) for p in silent.module_.parameters())


def test_huge_radius_trains_with_finite_loss(digits):
    X, y = digits  # 1e4 x Xavier: saturated softmax but finite float32 losses (log-softmax)
    net = GoldilocksClassifier(MLP, module__hidden=(8,), max_epochs=2, random_state=0,
                               init_scaler=InitScaler(radius=1e4)).fit(X, y)
    assert np.isfinite(net.history[:, "train_loss"]).all()


STOCHASTIC = "training mode that are random or update their buffers.*model.eval"
#: every kind of layer that is random or updates buffers in training mode, on (N, 2, 4)
MODE_LAYERS = {
    "dropout": lambda: nn.Dropout(0.5),
    "bn": lambda: nn.BatchNorm1d(2),
    "dropout1d": lambda: nn.Dropout1d(0.5),
    "alpha-dropout": lambda: nn.AlphaDropout(0.5),
    "rrelu": lambda: nn.RReLU(),
    "instancenorm-running": lambda: nn.InstanceNorm1d(2, track_running_stats=True),
    "spectral-norm": lambda: torch.nn.utils.parametrizations.spectral_norm(nn.Linear(4, 4)),
    "spectral-norm-hook": lambda: torch.nn.utils.spectral_norm(nn.Linear(4, 4)),
}


def _stochastic_net(layer):
    torch.manual_seed(0)
    layer = MODE_LAYERS[layer]()
    net = nn.Sequential(nn.Linear(64, 8), nn.Unflatten(1, (2, 4)), layer, nn.Flatten(),
                        nn.ReLU(), nn.Linear(8, 10)).double()
    with torch.no_grad():  # running statistics that have seen data (no "fresh" warning)
        net(torch.randn(16, 64, dtype=torch.float64))
    return net


def test_warning_for_normalization_that_never_ran_in_training_mode(digits):
    X, y = digits
    net = nn.Sequential(nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10))
    net.eval()
    with pytest.warns(UserWarning, match=r"'1' have never run in training mode.*still 0 and 1"):
        hutchinson(net, X, y, n_probes=2, random_state=0)
    with warnings.catch_warnings():  # a probe warns once: from the curvature part only
        warnings.simplefilter("error")
        model_state(net, X, y)
    net.train()
    with torch.no_grad():
        net(torch.as_tensor(X[:20]))
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hutchinson(net, X, y, n_probes=2, random_state=0)


@pytest.mark.parametrize("layer", list(MODE_LAYERS))
def test_warning_for_stochastic_layers_in_training_mode(layer, digits):
    X, y = digits
    net = _stochastic_net(layer)
    before = copy.deepcopy(net.state_dict())
    with pytest.warns(UserWarning, match=STOCHASTIC):
        est = hutchinson(net, X, y, n_probes=3, random_state=0)
    with pytest.warns(UserWarning, match=STOCHASTIC):
        state = model_state(net, X, y)
    # measured deterministically (eval mode, private copy): the caller's module is unchanged
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # the eval-mode values: each equals a plain evaluation of the eval-mode network
    ev = copy.deepcopy(net).eval()
    with torch.no_grad():
        z = ev(torch.as_tensor(X, dtype=torch.float64))
        ref_loss = float(nn.functional.cross_entropy(z, torch.as_tensor(y)))
    assert state["loss"] == pytest.approx(ref_loss, rel=1e-12)
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning in eval mode
        assert hutchinson(net, X, y, n_probes=3, random_state=0) == est
        assert model_state(net, X, y) == state
        P = make_projection("dense", sum(p.numel() for p in net.parameters()), 2,
                            random_state=0)
        a, b = subspace_hessian(net, X, y, P).H, subspace_hessian(net, X, y, P).H
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["reverse", "forward"])
@pytest.mark.parametrize("layer", list(MODE_LAYERS))
def test_subspace_hessian_measures_stochastic_layers_in_eval_mode(layer, method, digits):
    if layer == "rrelu" and method == "forward":
        pytest.skip("torch's vmap has no rule for aten::rrelu, even in eval mode")
    # like hutchinson and model_state: a warning, then the deterministic (eval-mode)
    # curvature of a private copy; the caller's module, modes and statistics are unchanged
    X, y = digits
    net = _stochastic_net(layer)
    before = copy.deepcopy(net.state_dict())
    P = make_projection("dense", sum(p.numel() for p in net.parameters()), 2, random_state=0)
    with pytest.warns(UserWarning, match=STOCHASTIC):
        res = subspace_hessian(net, X, y, P, method=method)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    ref = subspace_hessian(copy.deepcopy(net).eval(), X, y, P, method=method)
    assert torch.equal(res.H, ref.H) and torch.equal(res.G, ref.G)


# ---------------------------------------------------------------- issue 17: silent wrong numbers
_X17 = np.random.default_rng(0).normal(size=(24, 4)).astype(np.float32)
_Y17 = np.arange(24) % 3


def _mlp17(dtype=torch.float64):
    torch.manual_seed(0)
    return MLP(4, (5,), 3).to(dtype)


def _brute_norm(module) -> float:
    """||w|| by exact rational arithmetic on the float64 values (no under/overflow)."""
    from fractions import Fraction

    total = sum(Fraction(float(v)) ** 2 for p in module.parameters() if p.requires_grad
                for v in p.detach().double().reshape(-1).tolist())
    if total == 0:
        return 0.0
    # sqrt of a Fraction: scale to a float-sized number first
    e = (total.numerator.bit_length() - total.denominator.bit_length()) // 2
    return math.sqrt(float(total / Fraction(2) ** (2 * e))) * 2.0 ** e


def test_c01_init_scaler_rescales_in_the_target_dtype():
    """Case 1: float64 radii 1e-50 and 1e39 are reached exactly, in the direction of the
    usual init; float32 cannot hold 1e-50: refused, naming init_scaler__radius."""
    base = GoldilocksClassifier(MLP, module__hidden=(5,), max_epochs=0, random_state=0,
                                init_scaler=InitScaler(radius=1.0))
    w1 = torch.cat([p.detach().double().reshape(-1) for p in
                    base.fit(_X17, _Y17).module_.parameters()])
    for r in (1e-50, 1e39):
        net = GoldilocksClassifier(MLP, module__hidden=(5,), dtype="float64", max_epochs=0,
                                   init_scaler=InitScaler(radius=r), random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            net.fit(_X17, _Y17)
        w = torch.cat([p.detach().reshape(-1) for p in net.module_.parameters()])
        from goldisk import reference_radius

        target = r * reference_radius(net.module_)
        assert math.isclose(_brute_norm(net.module_), target, rel_tol=1e-12)
        # the same init direction as the radius-1 float32 net (same seed)
        cos = float((w / target) @ (w1 / w1.norm()))
        assert cos > 1 - 1e-6
    with pytest.raises(ValueError, match=r"init_scaler__radius=1e-50.*float32.*float64"):
        GoldilocksClassifier(MLP, module__hidden=(5,), max_epochs=0, random_state=0,
                             init_scaler=InitScaler(radius=1e-50)).fit(_X17, _Y17)


def test_c03_model_state_and_hutchinson_warn_on_nan_weights():
    """Case 3: one NaN weight gives NaN statistics with a warning naming the parameter,
    never an accuracy of 0.225 or an entropy of 0."""
    m = _mlp17()
    with torch.no_grad():
        m.net[0].weight[0, 0] = float("nan")
    name = next(n for n, p in m.named_parameters() if torch.isnan(p).any())
    with pytest.warns(RuntimeWarning, match=re.escape(name)):
        s = model_state(m, _X17, _Y17)
    assert all(math.isnan(v) for v in s.values())
    with pytest.warns(RuntimeWarning, match=re.escape(name)):
        h = hutchinson(m, _X17, _Y17, n_probes=2, random_state=0)
    assert math.isnan(h["trace"])


def test_c03_model_state_overflowing_logits_are_nan_with_a_warning():
    m = _mlp17(torch.float32)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1e20)  # logits ~1e40 overflow float32
    with pytest.warns(RuntimeWarning, match="overflow"):
        s = model_state(m, _X17, _Y17, dtype=torch.float32)
    assert all(math.isnan(v) for v in s.values())


def test_c04_rescale_refuses_nan_and_unrepresentable_radii():
    """Case 4: a NaN weight, and float32 targets whose entries would overflow (1e40 over
    43 weights: ~1.5e39 each) or underflow (1e-46) are refused; the module is left as it
    was. 1e39 (entries ~1.5e38) is reached: it was inf, the factor rounded to float32."""
    m = _mlp17()
    with torch.no_grad():
        m.net[2].bias[1] = float("nan")
    bad = next(n for n, p in m.named_parameters() if torch.isnan(p).any())
    with pytest.raises(ValueError, match=re.escape(bad)):
        rescale_(m, 1.0)
    for target in (1e40, 1e-46):
        for mode in ("global", "per_layer"):
            m32 = _mlp17(torch.float32)
            before = copy.deepcopy(m32.state_dict())
            with pytest.raises(ValueError, match=r"cannot be represented in torch.float32"):
                rescale_(m32, target, mode=mode)
            for k, v in m32.state_dict().items():
                assert torch.equal(v, before[k])
    for target in (1e39, 1e30, 1e-40):  # representable: reached to float32 rounding
        m32 = _mlp17(torch.float32)
        rescale_(m32, target)
        assert math.isclose(_brute_norm(m32), target, rel_tol=1e-3 if target < 1e-37 else 1e-6)


@pytest.mark.parametrize("scale", [1e-200, 1e160, 1e-300, 1e300])
def test_c05_radius_is_exact_at_extreme_float64_scales(scale):
    """Case 5: radius() of float64 weights x1e-200 read 0.0 and x1e160 inf."""
    from goldisk import radius

    m = _mlp17()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    ref = _brute_norm(m)
    assert math.isclose(radius(m), ref, rel_tol=1e-12)
    if scale < 1e250:  # (1e300 * 2 would overflow float64 itself)
        rescale_(m, 2 * ref)
        assert math.isclose(_brute_norm(m), 2 * ref, rel_tol=1e-12)
