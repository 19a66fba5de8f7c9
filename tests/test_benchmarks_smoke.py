"""Smoke test of ``benchmarks/bench_hessian.py`` at a tiny size (a few seconds).

Every method of the benchmark must give the same subspace Hessian as the autograd
reference. The optional peers (PyHessian, curvlinops) are skipped when not installed.
"""

import importlib
import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import brute_force_gauss_newton

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_hessian.py"


@pytest.fixture(scope="module")
def bench():
    """The benchmark's methods (``_hessian_methods``, on ``sys.path`` once the driver
    ``bench_hessian.py`` is loaded) and the driver's ``rel_err``."""
    spec = importlib.util.spec_from_file_location("bench_hessian", BENCH)
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    methods = importlib.import_module("_hessian_methods")
    methods.rel_err = driver.rel_err
    return methods


@pytest.mark.parametrize(
    "method",
    ["goldisk", "goldisk+G", "goldisk-forward", "goldisk-chunk=d", "rr-vmap", "autograd-vec",
     "hvp-loop", "pyhessian", "curvlinops"],
)
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_bench_methods_agree_with_autograd(bench, method, kind):
    if bench.REQUIRES.get(method):
        pytest.importorskip(bench.REQUIRES[method])
    if kind != "dense" and method == "curvlinops":
        kind = "dense"  # the operator is applied to the D x d matrix either way
    net, X, y = bench.make_workload(n=23, in_features=6, hidden=(5, 4), classes=3)
    P = bench.make_P(kind, bench.n_params(net), 4)
    H_ref, _ = bench.compute_hessian("autograd", net, X, y, P)
    H, G = bench.compute_hessian(method, net, X, y, P, batch_size=10, chunk_size=3)
    assert H.shape == (4, 4)
    assert bench.rel_err(H, H_ref) < 1e-10
    if method.endswith("+G"):  # G against J^T A J from the explicit Jacobian, projected
        M = P.to_dense()
        G_ref = M.T @ brute_force_gauss_newton(net, X, y) @ M
        assert bench.rel_err(G, G_ref) < 1e-10


def test_allocation_recorder_sees_batched_tensors(bench):
    rec = bench.AllocationRecorder()
    with rec:
        torch.func.vmap(lambda v: v * 2)(torch.ones(7, 3, dtype=torch.float64))
    assert rec.largest[0] == 21


def test_peak_memory_counts_live_tensor_bytes(bench):
    # the CPU stand-in for torch.cuda.max_memory_allocated used by bench_scale: the peak of
    # live tensor bytes inside the block, whatever the C heap keeps or returns
    common = importlib.import_module("_common")  # on sys.path once bench_hessian is loaded
    with common.PeakMemory("cpu", tensors=True) as mem:
        a = torch.empty(1000, 1000)
        b = torch.empty(500, 1000, dtype=torch.float64)
        del a
        c = torch.empty(200, 1000)
        del b, c
    assert mem.tensor_peak_mib == pytest.approx((1000 * 1000 * 4 + 500 * 1000 * 8) / 2**20)
    assert common.PeakMemory("cpu").tensor_peak_mib is None  # off unless asked for


def test_gpu_correctness_rehearses_on_the_cpu(tmp_path, monkeypatch):
    # the GPU lease's first step, run here with the reverse engine on its batched (GPU)
    # path: every float64 comparison within 1e-8, the JSON written
    import json

    import goldisk.curvature._reverse as reverse

    monkeypatch.setattr(reverse, "LOOP_MAX", reverse.LOOP_MAX)  # restored after the test
    path = Path(__file__).parents[1] / "benchmarks" / "gpu_correctness.py"
    spec = importlib.util.spec_from_file_location("gpu_correctness", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "gc.json"
    assert script.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["float64_within_1e-8"] and len(result["rows"]) == 4 and result["complete"]
    assert result["device"] == "cpu (rehearsal)"
    assert torch.__version__.startswith(result["environment"]["versions"]["torch"])
    assert max(r["f64_H_reverse"] for r in result["rows"] if "f64_H_reverse" in r) < 1e-12


def test_fastfood_memory_benchmark_records_every_stage(tmp_path, monkeypatch):
    import json

    bench_dir = str(BENCH.parent)
    monkeypatch.syspath_prepend(bench_dir)  # the spawned child imports the script by name
    script = importlib.import_module("bench_fastfood_memory")
    out = tmp_path / "ff.json"
    script.main(["--sizes", "3000:5:float64", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert "error" not in row, row
    assert row["L"] == 4096 and set(row["stages"]) == {
        "construction", "first forward", "first transpose"}
    # the fold holds one float64 value and one int32 column index per entry of L, and
    # Lq + 1 = 9 int32 row pointers; the index one int32 per entry
    assert row["fold_cache_mib"] * 2**20 == 4096 * (8 + 4) + 9 * 4
    assert row["index_cache_mib"] * 2**20 == 4096 * 4
    assert all(s["seconds"] > 0 and s["peak_mib"] >= 0 for s in row["stages"].values())


def test_overhead_benchmark_saves_after_every_round(monkeypatch):
    # a run cut short (the GPU lease's time limit) keeps the rounds it finished
    monkeypatch.syspath_prepend(str(BENCH.parent))
    script = importlib.import_module("bench_scale")
    saved = []
    rows, notes = script.overhead(torch.device("cpu"), 200_000, 4, batch=8, steps=1,
                                  repeats=3, save=lambda r, n: saved.append((r, n)))
    methods = ["full space", "subspace (dense)", "subspace (sparse)", "subspace (sparse-li)",
               "subspace (fastfood)"]
    assert [r["method"] for r in rows] == methods
    assert [[r["steps_timed"] for r in s[0]] for s in saved] == [[1] * 5, [2] * 5]
    assert "over 2 round-robin blocks" in saved[-1][1]["timing"]
    assert all(r["step_s"] > 0 for r in rows) and rows[0]["ratio"] == 1.0
    assert {r["D"] for r in rows} == {199_210} and [r["d"] for r in rows] == [199_210] + [4] * 4
