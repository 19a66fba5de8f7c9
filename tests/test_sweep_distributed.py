"""Sweeps through joblib backends: loky, a real dask LocalCluster, and Ray in local mode
give the same rows as the serial run for the same seeds."""

import pandas as pd
import pytest

from goldisk.cli import main
from goldisk.datasets import load_digits
from goldisk.models import MLP
from goldisk.sweep import radius_sweep

ARGS = ["--radii", "0.3,1,3", "--dims", "2,3", "--n-subspaces", "2", "--hessian-samples",
        "40", "--hidden", "6", "--no-progress"]
KEYS = ["subspace", "radius_index", "dim"]


def _run(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(["sweep", "--out", str(out), *ARGS, *extra]) == 0
    return pd.read_csv(out / "sweep.csv").sort_values(KEYS, ignore_index=True)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("serial"), "serial")


def _same(a, b):
    # worker processes may use a different BLAS thread count: equal to round-off, not bits
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-13)


def test_loky_two_workers_equals_serial(tmp_path, serial):
    _same(_run(tmp_path, "loky", "--n-jobs", "2", "--backend", "loky"), serial)


def test_dask_local_cluster_equals_serial(tmp_path, serial):
    pytest.importorskip("distributed")
    _same(_run(tmp_path, "dask", "--n-jobs", "2", "--backend", "dask"), serial)


def test_ray_local_equals_serial(tmp_path, serial):
    pytest.importorskip("ray")
    _same(_run(tmp_path, "ray", "--n-jobs", "2", "--backend", "ray"), serial)


def test_library_n_jobs_equals_serial():
    ds = load_digits()
    kw = dict(radii=[0.5, 2.0], dims=(2,), n_subspaces=2, max_samples=30, progress=False)
    a = radius_sweep(MLP(64, (5,), 10), ds.X, ds.y, n_jobs=1, **kw)
    b = radius_sweep(MLP(64, (5,), 10), ds.X, ds.y, n_jobs=2, **kw)
    _same(a, b)


def test_dask_workers_do_not_get_dask_malloc_trim_setting(monkeypatch):
    # dask's default MALLOC_TRIM_THRESHOLD_=65536 in workers made sweeps 1.6-2x slower
    import os
    import types

    pytest.importorskip("distributed")
    from distributed import get_client

    from goldisk.cli._common import parallel_backend

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    args = types.SimpleNamespace(backend="dask", scheduler=None, n_jobs=1)
    with parallel_backend(args):
        env = get_client().run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert env and set(env.values()) == {None}
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
