"""The radius sweep (library and `goldisk sweep`) against direct engine calls."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from goldisk._flat import parameter_vector
from goldisk.cli import main
from goldisk.curvature import hessian_statistics, subspace_hessian
from goldisk.datasets import load_digits
from goldisk.models import MLP, init_weights_
from goldisk.projections import make_projection
from goldisk.sweep import default_radii, radius_sweep

TINY = ["--radii", "0.1,1,10", "--dims", "2,4", "--n-subspaces", "2", "--hessian-samples",
        "60", "--hidden", "8", "--no-progress"]


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_default_grid_is_forts():
    r = default_radii()
    assert len(r) == 25
    assert np.allclose(np.log10(r**2), np.linspace(-4, 4, 25))


def test_rows_equal_direct_engine_calls(digits):
    X, y = digits.X[:80], digits.y[:80]
    model = MLP(64, (8,), 10)
    df = radius_sweep(model, X, y, radii=[0.5, 2.0], dims=(3, 5), n_subspaces=1,
                      max_samples=None, random_state=4, progress=False)
    assert len(df) == 4 and set(df["dim"]) == {3, 5}
    # rebuild subspace 0 by hand from the same seeds
    seeds = np.random.default_rng(4).integers(0, 2**62, size=(1, 2))
    net = MLP(64, (8,), 10).double()
    init_weights_(net, "xavier", generator=torch.Generator().manual_seed(int(seeds[0, 0])))
    w0 = parameter_vector(net)
    P = make_projection("dense", w0.numel(), 5, random_state=int(seeds[0, 1]))
    r_ref = df["reference_radius"].iloc[0]
    for _, row in df.iterrows():
        point = w0 * (row["radius_ratio"] * r_ref / float(w0.norm()))
        assert float(point.norm()) == pytest.approx(row["radius"], rel=1e-12)
        res = subspace_hessian(net, X, y, P, point=point).block(int(row["dim"]))
        ref = hessian_statistics(res.H)
        for key in ("trace", "frobenius", "trace_ratio", "frac_positive"):
            assert row[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-15)
        assert row["g_trace"] + row["h_trace"] == pytest.approx(row["trace"], rel=1e-9)
        assert row["loss"] == pytest.approx(float(res.loss), rel=1e-12)


def test_bad_arguments(digits):
    model = MLP(64, (8,), 10)
    with pytest.raises(ValueError, match="radii"):
        radius_sweep(model, digits.X, digits.y, radii=[-1.0], progress=False)
    with pytest.raises(ValueError, match="dims"):
        radius_sweep(model, digits.X, digits.y, dims=(0, 3), progress=False)
    with pytest.raises(ValueError, match="reference"):
        radius_sweep(model, digits.X, digits.y, reference="nope", progress=False)
    with pytest.raises(ValueError, match="n_subspaces"):
        radius_sweep(model, digits.X, digits.y, n_subspaces=0, progress=False)


def test_cli_writes_csv_png_and_config(tmp_path):
    out = tmp_path / "run"
    assert main(["sweep", "--out", str(out), *TINY]) == 0
    df = pd.read_csv(out / "sweep.csv")
    assert len(df) == 3 * 2 * 2
    for col in ("radius_ratio", "dim", "trace_ratio", "frac_positive", "loss", "g_trace",
                "h_trace", "confidence", "entropy", "logit_grad_norm", "zero_logit_frac"):
        assert col in df.columns
    assert (out / "sweep.png").stat().st_size > 10_000
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["environment"]["torch"] == torch.__version__ and cfg["rows"] == 12
    assert all(-math.sqrt(k) <= t <= math.sqrt(k) for k, t in zip(df["dim"], df["trace_ratio"],
                                                                   strict=True))


def test_cli_refuses_existing_output_and_resumes_exactly(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sweep", "--out", str(out), *TINY]) == 0
    full = pd.read_csv(out / "sweep.csv")
    assert main(["sweep", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "--force" in err[0]
    # simulate a kill: keep 5 rows (2 complete units + half a unit) and a torn last line
    lines = (out / "sweep.csv").read_text().splitlines(keepends=True)
    (out / "sweep.csv").write_text("".join(lines[:6]) + lines[6][:20])
    assert main(["sweep", "--out", str(out), "--resume", *TINY]) == 0
    resumed = pd.read_csv(out / "sweep.csv")
    pd.testing.assert_frame_equal(resumed, full)
    # damage a finished CSV as an editor or a stray write might: a line cut short and then
    # ended, a junk line, a unit written twice; resume must recompute exactly what is bad
    lines = (out / "sweep.csv").read_text().splitlines(keepends=True)
    damaged = lines[:3] + [lines[3][:25] + "\n", "garbage\n"] + lines[4:] + lines[1:3]
    (out / "sweep.csv").write_text("".join(damaged))
    assert main(["sweep", "--out", str(out), "--resume", *TINY]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "sweep.csv"), full)


@pytest.mark.parametrize("argv, words", [
    (["--dims", "a,b"], "--dims"),
    (["--radii", "x"], "--radii"),
    (["--n-subspaces", "0"], "--n-subspaces"),
    (["--dataset", "mnist"], "--data-root"),
    (["--data-root", "/nonexistent/x", "--dataset", "mnist"], "--data-root"),
    (["--model", "resnet1000"], "--model"),
    (["--force", "--resume"], "--force"),
    (["--n-jobs", "0"], "--n-jobs"),
    (["--scheduler", "tcp://x:1"], "--scheduler"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, words):
    try:
        code = main(["sweep", "--out", str(tmp_path / "o"), "--no-progress", *argv])
    except SystemExit as exc:  # argparse's own errors (e.g. an invalid choice)
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0]
    assert not (tmp_path / "o" / "sweep.csv").exists()


def test_vectorized_radii_equal_one_at_a_time(digits):
    kw = dict(radii=[0.3, 1.0, 3.0], dims=(2, 3), n_subspaces=2, max_samples=50,
              progress=False, random_state=1)
    a = radius_sweep(MLP(64, (6,), 10), digits.X, digits.y, radius_batch=1, **kw)
    b = radius_sweep(MLP(64, (6,), 10), digits.X, digits.y, radius_batch=3, **kw)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-10)


def test_plots_leave_pyplot_and_the_backend_alone(tmp_path):
    """Plot functions make plain Figures: nothing is registered with pyplot (no figure
    pile-up over a long session) and the user's backend is not switched."""
    import matplotlib
    import matplotlib.pyplot as plt

    from goldisk.experiments._plots import plot_sweep_norms
    from goldisk.sweep import plot_sweep

    out = tmp_path / "run"
    assert main(["sweep", "--out", str(out), *TINY]) == 0
    df = pd.read_csv(out / "sweep.csv")
    backend, figures = matplotlib.get_backend(), plt.get_fignums()
    for _ in range(3):
        fig = plot_sweep(df, tmp_path / "again.png")
        plot_sweep_norms(df, tmp_path / "norms.png")
    assert plt.get_fignums() == figures
    assert matplotlib.get_backend() == backend
    assert len(fig.axes) == 3 and (tmp_path / "again.png").stat().st_size > 10_000
    assert (tmp_path / "norms.png").stat().st_size > 10_000


class _Scaled(torch.nn.Module):
    """An MLP whose logits are multiplied by a plain attribute: two of them print alike."""

    def __init__(self, s):
        super().__init__()
        self.s, self.net = s, MLP(64, (6,), 10)

    def forward(self, x):
        return self.s * self.net(x)


def test_sweeps_of_models_that_print_alike_do_not_share_cached_origins(digits):
    kw = dict(radii=[1.0], dims=(3,), n_subspaces=1, max_samples=60, progress=False)
    assert repr(_Scaled(0.1)) == repr(_Scaled(5.0))
    radius_sweep(_Scaled(0.1), digits.X, digits.y, **kw)  # fills the per-process cache
    after = radius_sweep(_Scaled(5.0), digits.X, digits.y, **kw)
    from goldisk.sweep import _subspace_origin

    _subspace_origin.cache_clear()
    fresh = radius_sweep(_Scaled(5.0), digits.X, digits.y, **kw)
    pd.testing.assert_frame_equal(after, fresh)
