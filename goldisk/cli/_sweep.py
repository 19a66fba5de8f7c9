"""``goldisk sweep``: Fort & Scherlis's radius sweep, the main job."""

from __future__ import annotations

import math
import time

from .. import _results_io as rio
from .._names import REFERENCES, SUBSPACE_KINDS, SUBSPACE_PROJECTIONS
from ._common import (
    CLIError,
    add_backend_arguments,
    add_common_arguments,
    add_model_choice,
    check_backend_arguments,
    check_common_arguments,
    data_and_model,
    parallel_backend,
    parse_floats,
    parse_ints,
)

NAME = "sweep"
HELP = "curvature on random subspaces against radius (Fort & Scherlis Fig. 3-5)"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP)
    add_common_arguments(p, "out/sweep")
    add_model_choice(p, hidden="100,100", why=", the MLP of Fort & Scherlis's Figures 3-5; the "
                     "other subcommands train many nets and default to 32,32")
    p.add_argument("--activation", default="relu", choices=("relu", "tanh"))
    p.add_argument("--no-bias", action="store_true", help="bias-free (homogeneous) layers")
    p.add_argument("--dims", default="10,50,100",
                   help="subspace dimensions, nested (default: %(default)s)")
    p.add_argument("--radii", default=None,
                   help="radius ratios r/r_ref, comma-separated (default: Fort's grid "
                        "log10(r^2/r_ref^2) = -4..4 step 1/3)")
    p.add_argument("--n-subspaces", type=int, default=3, help="random subspaces per radius")
    p.add_argument("--reference", default="xavier", choices=REFERENCES)
    p.add_argument("--projection", default="dense",
                   choices=SUBSPACE_PROJECTIONS)
    p.add_argument("--kind", default="hyperplane", choices=SUBSPACE_KINDS,
                   help="subspace through each point; Fort's zone is a hyperplane effect (the "
                        "hypersphere Hessian includes the sphere's curvature, see "
                        "docs/engine.md)")
    p.add_argument("--hessian-samples", type=int, default=1000,
                   help="samples in the Hessian's mean loss (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="samples per mini-batch of the Hessian (default: %(default)s)")
    p.add_argument("--float32", action="store_true", help="float32 instead of float64")
    add_backend_arguments(p)


def _resume_rows(csv_path, n_dims: int) -> tuple:
    """Complete units already on disk. Dropped: incomplete units (a killed write), lines
    not written whole, rows whose keys are not integers, repeated (unit, dim) rows."""
    import pandas as pd

    df = rio.read_written_rows(csv_path)
    keys = ["subspace", "radius_index", "dim"]
    if df.empty or not set(keys) <= set(df.columns):
        return pd.DataFrame(), set()
    numeric = df[keys].apply(pd.to_numeric, errors="coerce")
    df = df[numeric.notna().all(axis=1).to_numpy()].astype({k: "int64" for k in keys})
    df = df.drop_duplicates(subset=keys)
    counts = df.groupby(["subspace", "radius_index"]).size()
    complete = set(counts[counts == n_dims].index)
    keep = df[[u in complete for u in zip(df["subspace"], df["radius_index"], strict=True)]]
    return keep.reset_index(drop=True), complete


def run(args) -> int:
    from ..sweep import default_radii

    # every option is checked before the output folder is touched: a bad one leaves no
    # folder, CSV, PNG or JSON behind
    dims = parse_ints(args.dims, "--dims")
    if min(dims) < 1:
        raise CLIError(f"--dims must be integers >= 1, got {args.dims}")
    radii = parse_floats(args.radii, "--radii") if args.radii else list(default_radii())
    if not all(math.isfinite(r) and r > 0 for r in radii):
        raise CLIError(f"--radii must be finite ratios r/r_ref > 0, e.g. 0.5,1,2; got {args.radii}")
    if args.n_subspaces < 1:
        raise CLIError(f"--n-subspaces must be >= 1, got {args.n_subspaces}")
    if args.hessian_samples < 1:
        raise CLIError(f"--hessian-samples must be >= 1, got {args.hessian_samples}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_common_arguments(args)
    check_backend_arguments(args)
    ds, model = data_and_model(args)
    D = sum(p.numel() for p in model.parameters())
    if max(dims) > D:
        raise CLIError(f"--dims must be <= D={D} (the number of parameters of --model "
                       f"{args.model}), got {args.dims}")
    # the backend connects (or starts its cluster) before the output folder is touched: an
    # unreachable --scheduler leaves nothing behind either
    with parallel_backend(args):
        return _sweep(args, model, ds, dims, radii)


def _sweep(args, model, ds, dims, radii) -> int:
    import torch

    from ..sweep import plot_sweep, radius_sweep
    from ._common import prepare_output

    out = prepare_output(args.out, args.force, args.resume)
    csv_path = out / "sweep.csv"
    config = {"command": "sweep", **{k: v for k, v in vars(args).items() if k != "func"},
              "dims": sorted(set(dims)), "radii": radii}
    previous, done = _resume_rows(csv_path, len(set(dims)))
    previous_seconds = 0.0  # the legs before this one: config.json keeps the total
    if args.resume and (out / "config.json").exists():

        old = rio.read_config(out / "config.json")
        previous_seconds = float(old.get("seconds_total", old.get("seconds", 0.0)))
        changed = rio.changed_settings(old, config)
        if changed:
            raise CLIError(f"--resume with different settings ({', '.join(changed)}); "
                           "use the original options or --force")
    if not previous.empty:  # rewrite atomically without any partial or damaged unit
        rio.write_rows(csv_path, previous)
    else:
        rio.remove_rows(csv_path)
    rio.write_json(out / "config.json", {**config, "environment": rio.environment(args.device),
                                         "seconds_total": previous_seconds})
    columns = None if previous.empty else list(previous.columns)

    def save(rows):
        rio.append_rows(csv_path, rows, columns)

    start = time.perf_counter()
    radius_sweep(model, ds.X, ds.y, radii=radii, dims=dims, n_subspaces=args.n_subspaces,
                 reference=args.reference, projection=args.projection, kind=args.kind,
                 max_samples=args.hessian_samples, batch_size=args.batch_size,
                 dtype=torch.float32 if args.float32 else torch.float64,
                 device=args.device, random_state=args.seed, n_jobs=args.n_jobs,
                 progress=not args.no_progress, done=done, on_result=save)
    elapsed = time.perf_counter() - start
    df = rio.read_written_rows(csv_path).sort_values(["subspace", "radius_index", "dim"])
    rio.write_rows(csv_path, df)
    plot_sweep(df, out / "sweep.png",
               title=f"{args.dataset}, {args.model} {args.hidden if args.model == 'mlp' else ''}"
                     f" ({args.kind}s, {args.projection} projection)")
    rio.write_json(out / "config.json",
                   {**config, "environment": rio.environment(args.device), "seconds": elapsed,
                    "seconds_total": previous_seconds + elapsed, "rows": len(df)})
    print(f"wrote {csv_path} ({len(df)} rows) and {out / 'sweep.png'} in {elapsed:.1f} s")
    return 0
