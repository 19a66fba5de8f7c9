"""``goldisk spectrum``: the full-space Hessian spectrum at init, against radius.

At every radius ratio of the sweep's grid (Fort's ``log10(r^2/r_ref^2) = -4..4``) the
``--k`` largest and smallest eigenvalues of the full Hessian (and of its Gauss-Newton part)
by Lanczos; at the radii of ``--density-radii`` the spectral density by SLQ. One init
(``--reference`` scheme, ``--seed``), scaled along its own direction, as in the sweep.
"""

from __future__ import annotations

import json
import math
import time

from .. import _results_io as rio
from ._common import (
    CLIError,
    add_common_arguments,
    check_common_arguments,
    data_and_model,
    parse_floats,
    prepare_output,
)

NAME = "spectrum"
HELP = "full-space Hessian eigenvalues against radius and spectral density (Lanczos, SLQ)"
OPERATORS = ("hessian", "ggn")
N_POINTS = 400  # grid of each density


def add_parser(sub) -> None:
    from .._names import MODEL_NAMES

    p = sub.add_parser(NAME, help=HELP, description=HELP)
    add_common_arguments(p, "out/spectrum")
    p.add_argument("--model", default="mlp", choices=MODEL_NAMES, help="architecture")
    p.add_argument("--hidden", default="100,100", help="MLP widths")
    p.add_argument("--activation", default="relu", choices=("relu", "tanh"))
    p.add_argument("--no-bias", action="store_true", help="bias-free (homogeneous) layers")
    p.add_argument("--reference", default="xavier", choices=("xavier", "he", "lecun", "default"))
    p.add_argument("--radii", default=None,
                   help="radius ratios r/r_ref (default: the sweep's grid, "
                        "log10(r^2/r_ref^2) = -4..4 step 1/3)")
    p.add_argument("--operators", default="hessian,ggn", help="subset of hessian,ggn")
    p.add_argument("--k", type=int, default=3, help="eigenvalues at each end")
    p.add_argument("--tol", type=float, default=1e-6, help="Lanczos relative residual")
    p.add_argument("--max-iter", type=int, default=1000, help="Lanczos products at most")
    p.add_argument("--density-radii", default="0.1,1,10",
                   help="radius ratios of the SLQ density figure")
    p.add_argument("--n-probes", type=int, default=10, help="SLQ probes")
    p.add_argument("--n-steps", type=int, default=80, help="SLQ Lanczos steps per probe")
    p.add_argument("--hessian-samples", type=int, default=1000,
                   help="samples in the mean loss")
    p.add_argument("--batch-size", type=int, default=1000, help="samples per mini-batch")
    p.add_argument("--float32", action="store_true", help="float32 instead of float64")


def _check(args):
    from ..sweep import default_radii

    radii = parse_floats(args.radii, "--radii") if args.radii else list(default_radii())
    dens = parse_floats(args.density_radii, "--density-radii") if args.density_radii else []
    for name, values in (("--radii", radii), ("--density-radii", dens)):
        if not all(math.isfinite(r) and r > 0 for r in values):
            raise CLIError(f"{name} must be finite ratios r/r_ref > 0, e.g. 0.5,1,2")
    ops = list(dict.fromkeys(s.strip() for s in args.operators.split(",") if s.strip()))
    if not ops or any(o not in OPERATORS for o in ops):
        raise CLIError(f"--operators must be a subset of hessian,ggn, got {args.operators!r}")
    for name in ("k", "max_iter", "n_probes", "n_steps", "hessian_samples", "batch_size"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not (args.tol > 0 and math.isfinite(args.tol)):
        raise CLIError(f"--tol must be a positive number, got {args.tol}")
    check_common_arguments(args)
    return radii, dens, ops


def run(args) -> int:
    import torch

    from .._flat import ParamLayout, parameter_vector
    from .._radius import reference_radius
    from ..models import init_weights_

    radii, dens_radii, ops = _check(args)
    ds, model = data_and_model(args)
    dtype = torch.float32 if args.float32 else torch.float64
    model = model.to(device=args.device, dtype=dtype).eval()
    init_weights_(model, args.reference, generator=torch.Generator().manual_seed(args.seed))
    w0 = parameter_vector(model)
    r_ref = reference_radius(model, args.reference)
    X, y = ds.X[: args.hessian_samples], ds.y[: args.hessian_samples]
    out = prepare_output(args.out, args.force, args.resume)
    config = {"command": NAME, **{k: v for k, v in vars(args).items() if k != "func"},
              "radii": radii, "density_radii": dens_radii, "operators": ops}
    if args.resume and (out / "config.json").exists():
        changed = rio.changed_settings(json.loads((out / "config.json").read_text()), config)
        if changed:
            raise CLIError(f"--resume with different settings ({', '.join(changed)}); "
                           "use the original options or --force")
    rio.write_json(out / "config.json", {**config, "environment": rio.environment(args.device)})
    layout = ParamLayout(model)

    def at(ratio):
        layout.assign_(model, w0 * (ratio * r_ref / float(w0.norm())))
        return model

    start = time.perf_counter()
    eig_csv, dens_csv = out / "eigenvalues.csv", out / "density.csv"
    done = _done(eig_csv, "radius_index", len(ops) * 2 * args.k)
    for i, ratio in enumerate(radii):
        if i in done:
            continue
        rows = _eigen_rows(at(ratio), X, y, args, ops, dtype)
        rio.append_rows(eig_csv, [{"radius_index": i, "radius_ratio": ratio,
                               "radius": ratio * r_ref, **r} for r in rows])
    done = _done(dens_csv, "density_index", len(ops) * N_POINTS)
    for i, ratio in enumerate(dens_radii):
        if i in done:
            continue
        rows = []
        for op in ops:
            df = _density(at(ratio), X, y, args, op, dtype)
            rows += [{"density_index": i, "radius_ratio": ratio, "operator": op, **r}
                     for r in df.to_dict("records")]
        rio.append_rows(dens_csv, rows)
    elapsed = time.perf_counter() - start
    path = _plot(out, eig_csv, dens_csv, f"{args.dataset}, {args.model} "
                 f"{args.hidden if args.model == 'mlp' else ''} (D={layout.D})")
    rio.write_json(out / "config.json", {**config, "environment": rio.environment(args.device),
                                     "seconds": elapsed})
    print(f"wrote {eig_csv}, {dens_csv} and {path} in {elapsed:.1f} s")
    return 0


def _done(csv, key, per_index):
    """Indices whose ``per_index`` rows were all written whole; the CSV is rewritten
    (atomically) with only those, so a killed run's partial index is redone."""
    df = rio.read_written_rows(csv)
    if df.empty or key not in df.columns:
        csv.unlink(missing_ok=True)
        return set()
    counts = df.groupby(key).size()
    done = set(counts[counts == per_index].index)
    tmp = csv.with_suffix(".csv.tmp")
    df[df[key].isin(done)].to_csv(tmp, index=False)
    tmp.replace(csv)
    return done


def _eigen_rows(model, X, y, args, ops, dtype):
    import warnings

    from ..curvature import top_eigenvalues

    rows = []
    for op in ops:
        with warnings.catch_warnings():  # reported per row (converged), not per radius
            warnings.simplefilter("ignore", RuntimeWarning)
            lam, info = top_eigenvalues(model, X, y, args.k, operator=op, which="both",
                                        tol=args.tol, max_iter=args.max_iter,
                                        batch_size=args.batch_size, random_state=args.seed,
                                        dtype=dtype, device=args.device, return_info=True)
        k = args.k
        for rank, (end, value, res) in enumerate(zip(["largest"] * k + ["smallest"] * k, lam,
                                                     info["residuals"], strict=True)):
            rows.append({"operator": op, "end": end,
                         "rank": rank + 1 if rank < k else 2 * k - rank,
                         "eigenvalue": float(value), "residual": float(res),
                         "converged": info["converged"], "n_matvecs": info["n_matvecs"]})
    return rows


def _density(model, X, y, args, op, dtype):
    from ..curvature import spectral_density

    return spectral_density(model, X, y, operator=op, n_probes=args.n_probes,
                            n_steps=args.n_steps, n_points=N_POINTS, batch_size=args.batch_size,
                            random_state=args.seed, dtype=dtype, device=args.device)


def _plot(out, eig_csv, dens_csv, title):
    import numpy as np
    import pandas as pd

    from .._mpl import pyplot_free

    eig, dens = pd.read_csv(eig_csv), rio.read_written_rows(dens_csv)
    panels = [] if dens.empty else sorted(dens["radius_ratio"].unique())
    fig, axes = pyplot_free().subplots(1, 1 + len(panels), figsize=(5 + 4 * len(panels), 4),
                                       squeeze=False)
    ax = axes[0, 0]
    for (op, end), g in eig[eig["rank"] == 1].groupby(["operator", "end"]):
        g = g.sort_values("radius_ratio")
        ax.plot(g["radius_ratio"] ** 2, g["eigenvalue"], marker=".",
                label=f"{op} {'lambda_max' if end == 'largest' else 'lambda_min'}")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.set_xlabel("r^2 / r_ref^2")
    ax.set_ylabel("extreme eigenvalue (Lanczos)")
    ax.legend(fontsize=7)
    for ax, ratio in zip(axes[0, 1:], panels, strict=True):
        for op, g in dens[dens["radius_ratio"] == ratio].groupby("operator"):
            d = g["density"].to_numpy()
            ax.semilogy(g["eigenvalue"], np.maximum(d, d.max() * 1e-8), label=op)
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density (SLQ)")
        ax.set_title(f"r / r_ref = {ratio:g}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = out / "spectrum.png"
    fig.savefig(path, dpi=120)
    return path
