"""suggest_lr against brute-force eigenvalues, the edge of stability on digits, lr="auto",
and the trainability experiment, its correlations and its CLI."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from goldisk.curvature import suggest_lr
from goldisk.curvature._losses import per_sample_loss
from goldisk.curvature._suggest_lr import adam_preconditioner
from goldisk.models import MLP


def brute_hessian(net, X, y):
    """The full Hessian of the mean cross-entropy, column by column (float64)."""
    net = copy.deepcopy(net).double()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    w0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def f(w):
        parts, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            parts[n] = w[i : i + s.numel()].reshape(s)
            i += s.numel()
        return per_sample_loss(torch.func.functional_call(net, parts, (X,)), y).mean()

    return torch.autograd.functional.hessian(f, w0).numpy()


@pytest.fixture(scope="module")
def tiny():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(30, 3, generator=g, dtype=torch.float64)
    return MLP(3, (5,), 3).double(), X, torch.arange(30) % 3


def test_suggest_lr_sgd_is_two_over_brute_force_lambda_max(tiny):
    net, X, y = tiny
    lam = np.linalg.eigvalsh(brute_hessian(net, X, y))[-1]
    s = suggest_lr(net, X, y, random_state=0)
    assert s.lambda_max == pytest.approx(lam, rel=1e-7)
    assert s.lr == pytest.approx(2 / lam, rel=1e-7)
    m = suggest_lr(net, X, y, momentum=0.5, random_state=0)
    assert m.lr == pytest.approx(3 / lam, rel=1e-7)  # (2 + 2 beta) / lambda_max


def test_suggest_lr_adam_is_preconditioned_sharpness(tiny):
    net, X, y = tiny
    H = brute_hessian(net, X, y)
    # Adam's v_hat after one full-batch step is g^2: P = |g| + eps
    P = np.concatenate([p.reshape(-1).numpy() for p in adam_preconditioner(net, X, y)])
    g = torch.autograd.grad(per_sample_loss(net(X), y).mean(), list(net.parameters()))
    assert P == pytest.approx(np.abs(torch.cat([a.reshape(-1) for a in g]).numpy()) + 1e-8,
                              rel=1e-10)
    lam = np.linalg.eigvalsh(H / np.sqrt(np.outer(P, P)))[-1]
    s = suggest_lr(net, X, y, "adam", random_state=0)
    assert s.lambda_max == pytest.approx(lam, rel=1e-6)
    assert s.threshold == pytest.approx(38.0)
    assert s.lr == pytest.approx(38.0 / lam, rel=1e-6)


def test_suggest_lr_bad_input(tiny):
    net, X, y = tiny
    with pytest.raises(ValueError, match="optimizer must be one of"):
        suggest_lr(net, X, y, "rmsprop")
    with pytest.raises(ValueError, match="momentum"):
        suggest_lr(net, X, y, momentum=1.0)
    with pytest.raises(ValueError, match="betas"):
        suggest_lr(net, X, y, "adam", betas=(1.0, 0.9))


def _gd_losses(net, X, y, lr, steps):
    net = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    out = []
    for _ in range(steps + 1):
        opt.zero_grad()
        loss = per_sample_loss(net(X), y).mean()
        out.append(float(loss.detach()))
        loss.backward()
        opt.step()
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gd_below_and_above_the_suggested_lr_on_digits(seed):
    from goldisk.datasets import load_digits
    from goldisk.experiments import point_at

    ds = load_digits()
    X, y = torch.tensor(ds.X, dtype=torch.float64), torch.tensor(ds.y)
    net = point_at(MLP(64, (32, 32), 10), "xavier", seed).double()
    lr = suggest_lr(net, X, y, random_state=0).lr
    below = _gd_losses(net, X, y, 0.8 * lr, 10)
    assert np.all(np.diff(below) < 0), below  # lower at each of the first 10 steps
    above = _gd_losses(net, X, y, 2.5 * lr, 10)
    assert np.any(np.diff(above) > 0), above  # rises within the first 10 steps


def test_lr_auto_on_classifier():
    from goldisk import GoldilocksClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)).astype(np.float32), rng.integers(0, 3, 60)
    kw = {"module__hidden": (6,), "max_epochs": 0, "random_state": 0}
    net = GoldilocksClassifier(MLP, lr="auto", optimizer=torch.optim.SGD, **kw).fit(X, y)
    ref = suggest_lr(net.module_, X, y, random_state=net.init_seeds_["train"])
    assert net.lr_ == pytest.approx(ref.lr, rel=1e-6)
    assert net.optimizer_.param_groups[0]["lr"] == net.lr_
    adam = GoldilocksClassifier(MLP, lr="auto", **kw).fit(X, y)
    assert adam.lr_suggestion_.optimizer == "adam"
    fixed = GoldilocksClassifier(MLP, lr=0.05, **kw).fit(X, y)  # a user's number wins
    assert fixed.optimizer_.param_groups[0]["lr"] == 0.05 == fixed.lr_
    assert not hasattr(fixed, "lr_suggestion_")
    with pytest.raises(TypeError, match="lr must be a real number, got 'fast'.*lr='auto'"):
        GoldilocksClassifier(MLP, lr="fast", **kw).fit(X, y)


def test_spearman_correlations_against_scipy():
    from scipy import stats

    from goldisk.experiments import trainability_correlations

    rng = np.random.default_rng(0)
    n = 30
    x = rng.normal(size=n)
    df = pd.DataFrame({"model": "mlp", "grad_norm": x, "ntk_cond": rng.normal(size=n),
                       "adam_acc_1": x + 0.3 * rng.normal(size=n), "gd_acc_1": -x})
    c = trainability_correlations(df, n_boot=300).set_index(["statistic", "optimizer"])
    row = c.loc[("grad_norm", "adam")]
    rho, p = stats.spearmanr(x, df["adam_acc_1"])
    assert row["spearman"] == pytest.approx(rho) and row["p"] == pytest.approx(p)
    assert row["ci_low"] <= rho <= row["ci_high"] and row["verdict"] == "supported"
    assert c.loc[("grad_norm", "gd"), "verdict"] == "contradicted"  # rho = -1
    assert c.loc[("ntk_cond", "adam"), "ci_low"] < 0 < c.loc[("ntk_cond", "adam"), "ci_high"]


def test_trainability_tiny_run_and_cli(tmp_path):
    from goldisk.cli import main
    from goldisk.datasets import make_circles3
    from goldisk.experiments import trainability, trainability_columns

    ds = make_circles3(120)
    df = trainability({"mlp": MLP(2, (8,), 3)}, ds.X[:90], ds.y[:90], ds.X[90:], ds.y[90:],
                      radii=(1.0,), temperatures=(1.0, 2.0), n_seeds=1, epochs=(1, 2),
                      adam_lr=1e-2, gd_factor=0.5, stat_samples=60, n_batch=8, dim=4,
                      progress=False)
    assert list(df.columns) == trainability_columns((1, 2))
    assert len(df) == 2 and df["temperature"].tolist() == [1.0, 2.0]
    # GD trains at 0.5 x each init's own 2 / lambda_max
    assert np.allclose(df["lr_gd"] * df["lambda_max"], 1.0)
    out = tmp_path / "t"
    args = ["trainability", "--dataset", "circles", "--max-samples", "120", "--out", str(out),
            "--models", "mlp", "--hidden", "8", "--radii", "1", "--temperatures", "1,2",
            "--n-seeds", "1", "--epochs", "1,2", "--stat-samples", "60", "--n-batch", "8",
            "--dim", "4", "--bootstrap", "50", "--adam-lr", "0.01", "--no-progress"]
    assert main(args) == 0
    first = pd.read_csv(out / "trainability.csv")
    assert len(first) == 2 and (out / "correlations.csv").exists()
    assert (out / "trainability.png").exists()
    assert main([*args, "--resume"]) == 0  # nothing left to run: same rows
    pd.testing.assert_frame_equal(pd.read_csv(out / "trainability.csv")[first.columns[:-1]],
                                  first[first.columns[:-1]])


def test_edge_of_stability_records_the_suggested_edge():
    from goldisk.datasets import make_circles3
    from goldisk.experiments import edge_of_stability

    ds = make_circles3(60)
    net = MLP(2, (6,), 3)
    df = edge_of_stability(net, ds.X, ds.y, factors=(0.5, 3.0), steps=4, sharpness_every=2)
    s = suggest_lr(net.double(), ds.X, ds.y, random_state=0)
    assert df.groupby("factor").size().tolist() == [5, 5]
    assert np.allclose(df["lr"].unique(), [0.5 * s.lr, 3.0 * s.lr])
    first = df[df["step"] == 0]["sharpness"].to_numpy()
    assert np.allclose(first, s.lambda_max, rtol=1e-6)  # both runs start at the init
    assert df["sharpness"].isna().sum() == 4  # steps 1 and 3 of each run
    assert np.allclose(df["threshold"], 2 / df["lr"])


def test_classify_edge_runs_on_hand_made_runs():
    from goldisk.experiments import classify_edge_runs

    def run(factor, loss, sharp, lr=1.0):
        return pd.DataFrame({"factor": factor, "lr": lr, "step": range(len(loss)),
                             "loss": loss, "accuracy": 0.5, "sharpness": sharp,
                             "threshold": 2.0 / lr})

    df = pd.concat([
        run(0.5, [2.0, 1.5, 1.0, 0.5], [1.0, 1.2, 1.4, 1.5]),              # never rises
        run(0.9, [2.0, 1.0, 1.1, 0.4], [1.0, 2.0, 1.5, 1.0]),              # after 2/lr reached
        run(1.1, [2.0, 3.0, 1.0, 0.5], [2.5, 2.2, 1.5, 1.0]),              # starts above 2/lr
        run(4.0, [2.0, 9.0, 1e9, float("nan")], [2.5, 9.0, 1e5, np.nan]),  # blows up
    ])
    c = classify_edge_runs(df).set_index("factor")
    assert c["regime"].to_dict() == {0.5: "converge", 0.9: "edge of stability",
                                     1.1: "catapult", 4.0: "diverge"}
    assert c.loc[0.9, "first_rise"] == 2 and c.loc[0.5, "first_rise"] == -1


def test_trainability_help_states_every_default():
    import argparse

    from goldisk.cli import _subparser, build_parser

    sub = _subparser(build_parser(), "trainability")
    for action in sub._actions:
        if action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            continue
        assert str(action.default) in sub._get_formatter()._expand_help(action)


def test_lr_auto_on_a_subspace_net_uses_the_subspace_hessian():
    from goldisk import GoldilocksClassifier
    from goldisk.estimators import SubspaceProjector

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    net = GoldilocksClassifier(MLP, module__hidden=(6,), subspace=SubspaceProjector(dim=5),
                               lr="auto", optimizer=torch.optim.SGD, max_epochs=0,
                               dtype="float64", random_state=0).fit(X, y)
    module = net.module_
    (name, theta), = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def f(t):
        return per_sample_loss(torch.func.functional_call(module, {name: t}, (Xt,)), yt).mean()

    H = torch.autograd.functional.hessian(f, theta.detach().clone()).numpy()
    assert net.lr_ == pytest.approx(2 / np.linalg.eigvalsh(H)[-1], rel=1e-6)
