"""GPU against the CPU float64 reference: subspace Hessian, G, Hutchinson and state.

    python benchmarks/gpu_correctness.py [--out PATH]   # needs CUDA; prints relative errors
    python benchmarks/gpu_correctness.py --device cpu --quick   # rehearsal without a GPU

float64 on the GPU must agree with the CPU to <= 1e-8 (relative Frobenius error), with
both engines (``method="forward"``, the CUDA default, and ``"reverse"``, its batched double
backward); float32 and TF32 errors are reported, not asserted. ``--device cpu`` rehearses
the script without a GPU: the same comparisons on the CPU, with the reverse engine forced
onto its batched (GPU) path; ``--quick`` uses small problems (tests/test_benchmarks_smoke).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, write_json  # noqa: E402

from goldisk.curvature import hutchinson, model_state, subspace_hessian
from goldisk.models import MLP, SmallCNN, init_weights_
from goldisk.projections import make_projection


def rel(a, b):
    return float((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm())


def problems(quick=False):
    gen = torch.Generator().manual_seed(0)
    if quick:
        mlp = init_weights_(MLP(20, (16,), 3), "xavier", generator=1)
        yield "mlp-20-16-3", mlp, torch.randn(64, 20, generator=gen), \
            torch.randint(0, 3, (64,), generator=gen)
        return
    mlp = init_weights_(MLP(784, (200, 200), 10), "xavier", generator=1)
    yield "mlp-784-200-200-10", mlp, torch.randn(1000, 784, generator=gen), \
        torch.randint(0, 10, (1000,), generator=gen)
    cnn = init_weights_(SmallCNN(1, 10, image_size=28), "he", generator=2)
    yield "small-cnn", cnn, torch.randn(256, 1, 28, 28, generator=gen), \
        torch.randint(0, 10, (256,), generator=gen)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="JSON path (default results/gpu_correctness)")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a rehearsal")
    ap.add_argument("--quick", action="store_true", help="small problems (seconds)")
    args = ap.parse_args(argv)
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return 0
    if not dev.startswith("cuda"):  # rehearsal: the reverse engine's GPU (batched) path
        import goldisk.curvature._reverse as reverse

        reverse.LOOP_MAX = 0
    device_name = torch.cuda.get_device_name(torch.device(dev)) if dev.startswith("cuda") \
        else f"{dev} (rehearsal)"
    path = Path(args.out or Path(__file__).parent / "results" / "gpu_correctness.json")
    out, ok = [], True
    env = environment(dev)

    def save(done=False):  # after every row: a run cut short keeps what it measured
        write_json(path, {"device": device_name, "torch": torch.__version__, "environment": env,
                          "rows": out, "float64_within_1e-8": bool(ok), "complete": done})

    d = 8 if args.quick else 50
    for name, net, X, y in problems(args.quick):
        D = sum(p.numel() for p in net.parameters())
        for kind in ("dense", "sparse", "fastfood"):
            P = make_projection(kind, D, d, random_state=0)
            ref = subspace_hessian(net, X, y, P, batch_size=500, method="forward")
            row = {"problem": name, "projection": kind, "D": D, "d": d}
            gpu = subspace_hessian(net, X, y, P, batch_size=500, device=dev)
            row["f64_H"], row["f64_G"] = rel(gpu.H, ref.H), rel(gpu.G, ref.G)
            rev = subspace_hessian(net, X, y, P, batch_size=500, device=dev,
                                   method="reverse")
            row["f64_H_reverse"], row["f64_G_reverse"] = rel(rev.H, ref.H), rel(rev.G, ref.G)
            for tf32 in (False, True):
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
                f32 = subspace_hessian(net, X, y, P, batch_size=500, device=dev,
                                       dtype=torch.float32)
                row[f"f32{'_tf32' if tf32 else ''}_H"] = rel(f32.H, ref.H)
            torch.backends.cuda.matmul.allow_tf32 = False
            ok &= max(row["f64_H"], row["f64_G"], row["f64_H_reverse"],
                      row["f64_G_reverse"]) <= 1e-8
            out.append(row)
            print(row, flush=True)
            save()
        h_cpu = hutchinson(net, X[:200], y[:200], n_probes=8, random_state=0)
        h_gpu = hutchinson(net, X[:200], y[:200], n_probes=8, random_state=0, device=dev)
        s_cpu, s_gpu = model_state(net, X, y), model_state(net, X, y, device=dev)
        row = {"problem": name, "hutchinson_trace_rel": abs(h_gpu["trace"] / h_cpu["trace"] - 1),
               "state_loss_rel": abs(s_gpu["loss"] / s_cpu["loss"] - 1)}
        ok &= row["hutchinson_trace_rel"] <= 1e-8 and row["state_loss_rel"] <= 1e-8
        out.append(row)
        print(row, flush=True)
        save()
    save(done=True)
    worst = max(v for r in out for k, v in r.items() if k.startswith("f64_") or
                k.endswith("_rel"))
    f32 = [v for r in out for k, v in r.items() if k.startswith("f32")]
    print(f"summary: float64 within 1e-8: {ok} (worst {worst:.1e}); float32/TF32 "
          f"{min(f32):.1e} to {max(f32):.1e}; saved {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
