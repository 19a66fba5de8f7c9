"""Scale: an 11M-parameter ResNet-18 (CIFAR-shaped inputs, eval-mode BatchNorm) probed on
a d = 1,000 subspace, and subspace-training overhead (time per step in a d = 1,000
subspace over a full-space step).

    python benchmarks/bench_scale.py --device cuda
    python benchmarks/bench_scale.py --device cpu --only overhead

Peak memory is compared with one forward-backward pass at the same batch size plus d^2
floats; a TorchDispatchMode records the largest tensor created, to show that no D x d
array exists for the sparse and Fastfood projections.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from goldisk import SubspaceModule
from goldisk.curvature import subspace_hessian
from goldisk.models import MLP
from goldisk.projections import make_projection

RESULTS = Path(__file__).parent / "results"


class LargestTensor(TorchDispatchMode):
    """Remember the largest number of elements of any tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def peak_reset(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        return torch.cuda.memory_allocated(dev)
    return 0


def peak(dev, base):
    return torch.cuda.max_memory_allocated(dev) - base if dev.type == "cuda" else float("nan")


def resnet18():
    import torchvision

    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem
    net.maxpool = torch.nn.Identity()
    return net.eval()


def scale(dev, d, batch, dtype):
    net = resnet18().to(dev, dtype)
    D = sum(p.numel() for p in net.parameters())
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(batch, 3, 32, 32, generator=gen).to(dev, dtype)
    y = torch.randint(0, 10, (batch,), generator=gen).to(dev)
    base = peak_reset(dev)
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(X), y).backward()
    sync(dev)
    fwd_bwd = peak(dev, base)
    net.zero_grad(set_to_none=True)
    rows = []
    item = torch.finfo(dtype).bits // 8
    for kind in ("sparse", "fastfood"):  # no D x d tensor: checked on every op of a small run
        P = make_projection(kind, D, 20, random_state=0, dtype=dtype, device=dev)
        with LargestTensor() as spy:
            subspace_hessian(net, X[:16], y[:16], P, chunk_size=4)
        rows.append({"kind": kind, "check": "largest tensor", "d": 20,
                     "largest_tensor": spy.largest, "D_times_d": D * 20,
                     "no_Dxd_array": spy.largest < D * 20})
        print(rows[-1], flush=True)
    for kind, chunk in (("sparse", 16), ("fastfood", 16), ("fastfood", 1)):
        P = make_projection(kind, D, d, random_state=0, dtype=dtype, device=dev)
        subspace_hessian(net, X[:2], y[:2], P, chunk_size=chunk, gauss_newton=False)
        base = peak_reset(dev)
        sync(dev)
        t0 = time.perf_counter()
        res = subspace_hessian(net, X, y, P, batch_size=batch, chunk_size=chunk)
        sync(dev)
        secs = time.perf_counter() - t0
        used = peak(dev, base)
        rows.append({
            "kind": kind, "D": D, "d": d, "batch": batch, "chunk": chunk, "dtype": str(dtype),
            "seconds": secs, "peak_bytes": used, "fwd_bwd_peak_bytes": fwd_bwd,
            "d2_bytes": d * d * item, "peak_over_budget": used / (2 * fwd_bwd + d * d * item),
            "finite": bool(torch.isfinite(res.H).all()),
        })
        print(rows[-1], flush=True)
    return rows


def overhead(dev, D_target, d, batch, steps=20):
    width = 700 if D_target > 500_000 else 200  # D = 1,046,010 or 199,210
    net = MLP(784, (width, width), 10).to(dev)
    D = sum(p.numel() for p in net.parameters())
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(batch, 784, generator=gen).to(dev)
    y = torch.randint(0, 10, (batch,), generator=gen).to(dev)

    def time_steps(module):
        opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-3)
        for i in range(steps + 3):
            if i == 3:
                sync(dev)
                t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(X), y).backward()
            opt.step()
        sync(dev)
        return (time.perf_counter() - t0) / steps

    full = time_steps(net)
    rows = [{"method": "full space", "D": D, "d": D, "step_s": full, "ratio": 1.0}]
    for kind in ("dense", "sparse", "sparse-li", "fastfood"):
        if kind == "dense" and D * d > 4e8:
            continue
        P = make_projection(kind, D, d, random_state=0, dtype=torch.float32, device=dev)
        sub = SubspaceModule(net, P).to(dev)
        t = time_steps(sub)
        rows.append({"method": f"subspace ({kind})", "D": D, "d": d, "step_s": t,
                     "ratio": t / full})
        print(rows[-1], flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", choices=("scale", "overhead"), default=None)
    ap.add_argument("--d", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    dev = torch.device(args.device)
    out = {"device": str(dev), "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
           "threads": torch.get_num_threads()}
    if args.only in (None, "overhead"):
        D_target = 1_000_000 if dev.type == "cuda" else 200_000
        out["overhead"] = overhead(dev, D_target, args.d, args.batch)
    if args.only in (None, "scale"):
        out["scale"] = scale(dev, args.d, args.batch, torch.float32)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench_scale_{dev.type}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
