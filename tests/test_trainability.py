"""The trainability experiment (goldisk/experiments/_trainability.py), its correlations,
the edge of stability and its CLI."""

import numpy as np
import pandas as pd
import pytest

from goldisk.curvature import suggest_lr
from goldisk.models import MLP


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
