import os
import pickle
import struct

import numpy as np
import pytest
import torch

from goldisk.datasets import (
    Dataset,
    load_dataset,
    load_digits,
    load_torchvision,
    make_circles3,
    to_tensors,
)


def test_digits():
    ds = load_digits()
    assert ds.X.shape == (1797, 64) and ds.X.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.n_classes == 10 and set(ds.y) == set(range(10))
    assert ds.image_shape == (1, 8, 8) and ds.name == "digits"
    raw = load_digits(standardize=False).X
    varying = raw.std(axis=0) > 0
    assert not varying.all()  # digits has constant pixels: they must stay finite
    assert np.isfinite(ds.X).all()
    np.testing.assert_allclose(ds.X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.X.std(axis=0)[varying], 1, rtol=1e-4)
    assert load_digits(image=True).X.shape == (1797, 1, 8, 8)


def test_split_is_stratified():
    train, test = load_digits().split(test_size=0.25, random_state=0)
    assert len(train) + len(test) == 1797 and len(test) == 450
    assert isinstance(train, Dataset) and train.n_classes == 10
    freq = np.bincount(test.y) / len(test)
    np.testing.assert_allclose(freq, np.bincount(train.y) / len(train), atol=0.01)


def test_circles():
    ds = make_circles3(1500, noise=0.05, random_state=0)
    assert ds.X.shape == (1500, 2) and ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.n_classes == 3 and np.bincount(ds.y).tolist() == [500, 500, 500]
    radius = np.linalg.norm(ds.X, axis=1)
    means = [radius[ds.y == k].mean() for k in range(3)]
    np.testing.assert_allclose(means, [1, 2, 3], atol=0.02)
    assert np.bincount(make_circles3(301).y).tolist() == [101, 100, 100]
    a, b = make_circles3(90, random_state=1), make_circles3(90, random_state=1)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, make_circles3(90, random_state=2).X)
    gen = np.random.default_rng(5)
    assert make_circles3(30, random_state=gen).X.shape == (30, 2)


def test_circles_center_lets_a_bias_free_relu_net_learn():
    centred = make_circles3(300, random_state=4)
    shifted = make_circles3(300, random_state=4, center=(4.0, 4.0))
    np.testing.assert_allclose(shifted.X, centred.X + np.float32(4.0), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(shifted.y, centred.y)
    with pytest.raises(ValueError, match="center must be two finite numbers"):
        make_circles3(30, center=(1.0,))

    def test_accuracy(ds, test):
        gen = torch.Generator().manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(2, 64, bias=False), torch.nn.ReLU(),
                                  torch.nn.Linear(64, 64, bias=False), torch.nn.ReLU(),
                                  torch.nn.Linear(64, 3, bias=False))
        for p in net.parameters():
            p.data = torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5
        X, y = torch.from_numpy(ds.X), torch.from_numpy(ds.y)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(300):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(X), y).backward()
            opt.step()
        Xt, yt = torch.from_numpy(test.X), torch.from_numpy(test.y)
        return float((net(Xt).argmax(1) == yt).float().mean())

    # homogeneous in x: the class is constant along rays, so centred rings are at chance
    # on new samples (a fit of the training angles does not generalize); shifted ones not
    low = test_accuracy(centred, make_circles3(600, random_state=5))
    high = test_accuracy(shifted, make_circles3(600, random_state=5, center=(4.0, 4.0)))
    assert low < 0.42 and high > 0.55, (low, high)


def test_circles_does_not_use_global_rng():
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    make_circles3(30, random_state=None)
    np.testing.assert_array_equal(state, np.random.get_state()[1])  # noqa: NPY002


def test_load_dataset_dispatch_and_tensors():
    assert load_dataset("digits").X.shape == (1797, 64)
    c = load_dataset("circles", random_state=3, n_samples=60)
    np.testing.assert_array_equal(c.X, make_circles3(60, random_state=3).X)
    X, y = to_tensors(c, dtype=torch.float64)
    assert X.dtype == torch.float64 and y.dtype == torch.int64 and X.shape == (60, 2)
    with pytest.raises(ValueError, match="valid names are digits, circles, mnist"):
        load_dataset("imagenet")


# --- torchvision loaders on tiny files written in torchvision's on-disk format ---------------


def _write_idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _fake_mnist(root, folder, n_train=40, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    raw = os.path.join(root, folder, "raw")
    os.makedirs(raw)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        # torchvision 0.29 only checks that the four *uncompressed* raw files exist (no md5).
        _write_idx(os.path.join(raw, f"{split}-images-idx3-ubyte"), images, 2051)
        _write_idx(os.path.join(raw, f"{split}-labels-idx1-ubyte"), labels, 2049)
        out[split] = (images, labels)
    return out


def _fake_cifar(root, n_per_batch=8, seed=0):
    rng = np.random.default_rng(seed)
    base = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(base)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, size=n_per_batch).tolist())
        with open(os.path.join(base, name), "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        out[name] = (data, labels)
    with open(os.path.join(base, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return out


@pytest.fixture
def skip_md5(monkeypatch):
    # torchvision's CIFAR10 verifies the md5 of every batch (and of batches.meta) against the
    # real files; our tiny fakes cannot match, so in this test only integrity means existence.
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def _check_standardized(X, channels):
    per_channel = X.reshape(len(X), channels, -1).transpose(1, 0, 2).reshape(channels, -1)
    np.testing.assert_allclose(per_channel.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(axis=1), 1, rtol=1e-4)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_like(tmp_path, name, folder):
    raw = _fake_mnist(str(tmp_path), folder)
    ds = load_torchvision(name, tmp_path)
    assert ds.X.shape == (40, 784) and ds.X.dtype == np.float32
    assert ds.image_shape == (1, 28, 28) and ds.n_classes == 10 and ds.name == name
    np.testing.assert_array_equal(ds.y, raw["train"][1])
    _check_standardized(ds.X, 1)
    # standardization is affine in the raw pixels
    pix = raw["train"][0].reshape(40, -1).astype(np.float64) / 255
    expected = (pix - pix.mean()) / pix.std()
    np.testing.assert_allclose(ds.X, expected, atol=1e-5)

    test = load_dataset(name, root=str(tmp_path), train=False, flatten=False)
    assert test.X.shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(test.y, raw["t10k"][1])
    small = load_torchvision(name, tmp_path, max_samples=7)
    assert small.X.shape == (7, 784)
    np.testing.assert_array_equal(small.y, raw["train"][1][:7])
    _check_standardized(small.X, 1)


def test_cifar10(tmp_path, skip_md5):
    raw = _fake_cifar(str(tmp_path))
    ds = load_torchvision("cifar10", tmp_path, flatten=False)
    assert ds.X.shape == (40, 3, 32, 32) and ds.image_shape == (3, 32, 32)
    labels = sum((raw[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    np.testing.assert_array_equal(ds.y, labels)
    assert ds.y.dtype == np.int64
    _check_standardized(ds.X, 3)
    # the channel-major layout matches CIFAR's own row layout (R plane, G plane, B plane)
    first = raw["data_batch_1"][0][0].reshape(3, 1024).astype(np.float64)
    flat = load_torchvision("cifar10", tmp_path).X[0].reshape(3, 1024)
    np.testing.assert_allclose(np.corrcoef(first[1], flat[1])[0, 1], 1, atol=1e-6)

    test = load_dataset("cifar10", root=tmp_path, train=False, max_samples=5)
    assert test.X.shape == (5, 3072)
    np.testing.assert_array_equal(test.y, raw["test_batch"][1][:5])


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_data_gives_clear_error(tmp_path, name):
    with pytest.raises(ValueError, match=r"no .* dataset.*download=True.*root"):
        load_torchvision(name, tmp_path)
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match="root=.*nope"):
        load_dataset(name, root=missing)
    with pytest.raises(ValueError, match="root"):
        load_dataset(name)
    assert not missing.exists()


def test_corrupted_cifar_is_a_value_error(tmp_path):
    _fake_cifar(str(tmp_path))  # md5 check NOT bypassed: torchvision raises RuntimeError
    with pytest.raises(ValueError, match="could not load cifar10"):
        load_torchvision("cifar10", tmp_path)


def _rewrite(raw_dir, name, array, magic):
    _write_idx(os.path.join(raw_dir, name), array, magic)


@pytest.mark.parametrize("damage, match", [
    ("bad_magic", "corrupted or not in torchvision's format"),
    ("empty_labels", "corrupted or not in torchvision's format"),
    ("fewer_labels", "40 images but 10 labels"),
    ("label_11", r"labels .* lie in \[0, 11\], not 0..9"),
    ("32x32", r"images .* have shape \(32, 32\), not \(28, 28\)"),
])
def test_damaged_mnist_files_are_a_value_error_naming_the_fix(tmp_path, damage, match):
    _fake_mnist(str(tmp_path), "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    images, labels = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    if damage == "bad_magic":
        images.write_bytes(b"<html>not found</html>" * 10)
    elif damage == "empty_labels":
        labels.write_bytes(b"")
    elif damage == "fewer_labels":
        _rewrite(raw, labels.name, np.arange(10) % 10, 2049)
    elif damage == "label_11":
        _rewrite(raw, labels.name, np.arange(40) % 12, 2049)
    else:
        _rewrite(raw, images.name, np.zeros((40, 32, 32)), 2051)
    with pytest.raises(ValueError, match=match) as info:
        load_torchvision("mnist", tmp_path)
    assert "official" in str(info.value) or "download=True" in str(info.value)


def test_gzipped_mnist_files_get_a_gunzip_hint(tmp_path):
    import gzip

    _fake_mnist(str(tmp_path), "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    for path in raw.iterdir():  # as downloaded by hand: only the .gz files
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    with pytest.raises(ValueError, match="gunzip"):
        load_torchvision("mnist", tmp_path)


# --- Vysogorets et al.'s circles: their sizes and proportions -----------------------------
def test_circles_vdk_sizes_radii_and_centre():
    from goldisk.datasets import VDK_CLASS_SIZES, make_circles_vdk

    ds = load_dataset("circles-vdk")
    assert ds.X.shape == (2400, 2) and ds.n_classes == 3 and ds.name == "circles-vdk"
    assert tuple(np.bincount(ds.y)) == VDK_CLASS_SIZES == (654, 739, 1007)
    radius = np.linalg.norm(ds.X.astype(np.float64), axis=1)
    assert radius.max() <= 0.9
    means = [radius[ds.y == k].mean() for k in range(3)]
    np.testing.assert_allclose(means, [0.3, 0.55, 0.8], atol=0.01)
    # centred: the mean of a uniform angle vanishes, up to sampling noise
    assert np.abs(ds.X.mean(0)).max() < 3 * 0.8 / np.sqrt(2400)
    # other sizes keep the proportions (largest remainders)
    sizes = np.bincount(make_circles_vdk(1000, random_state=1).y)
    assert sizes.sum() == 1000 and np.abs(sizes - 1000 * np.array([654, 739, 1007]) / 2400
                                          ).max() < 1
    np.testing.assert_array_equal(load_dataset("circles-vysogorets", random_state=3).X,
                                  make_circles_vdk(random_state=3).X)
    for bad in ({"n_samples": 2}, {"noise": -1}, {"radii": (0.5, 0.3, 0.8)},
                {"radii": (0.3, 0.6, 1.2)}, {"max_radius": 0}):
        with pytest.raises(ValueError):
            make_circles_vdk(**bad)


def test_circles_vdk_bias_free_net_is_constant_on_rays():
    """A bias-free ReLU net gives every ray from the origin one class, so on the centred
    set it cannot beat predicting one class per direction (their demo is never trained)."""
    from goldisk.models import make_model

    ds = load_dataset("circles-vdk")
    net = make_model("mlp", 2, 3, hidden=(32, 32), bias=False).double()
    X = torch.as_tensor(ds.X, dtype=torch.float64)
    with torch.no_grad():
        pred = net(X).argmax(1)
        np.testing.assert_array_equal(pred, net(0.37 * X).argmax(1))
