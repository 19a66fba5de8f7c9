"""Profile one subspace-Hessian call (top kernels / ops) on a device.

    python benchmarks/profile_hessian.py --device cuda --scales 25
"""

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from goldisk.curvature import subspace_hessian
from goldisk.models import MLP, init_weights_
from goldisk.projections import make_projection


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scales", type=int, default=1)
    ap.add_argument("--d", type=int, default=100)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    net = init_weights_(MLP(784, (200, 200), 10), "xavier", generator=0)
    X, y = torch.randn(1000, 784, generator=gen), torch.randint(0, 10, (1000,), generator=gen)
    P = make_projection("dense", 199210, args.d, random_state=0)
    scales = [10 ** (k / 6 - 2) for k in range(args.scales)] if args.scales > 1 else None
    kw = dict(batch_size=1000, device=args.device, scales=scales)
    subspace_hessian(net, X, y, P, **kw)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with profile(activities=acts) as prof:
        subspace_hessian(net, X, y, P, **kw)
        if args.device == "cuda":
            torch.cuda.synchronize()
    key = "cuda_time_total" if args.device == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25))


if __name__ == "__main__":
    main()
