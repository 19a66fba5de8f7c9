"""``goldisk subspace-train``: train inside random hyperplanes and hyperspheres (Fort Fig. 2)."""

from __future__ import annotations

from .._names import SUBSPACE_KINDS
from . import _reproduce as exp
from ._common import CLIError, parse_floats, parse_ints

NAME = "subspace-train"
HELP = "validation accuracy inside random d-dim hyperplanes/hyperspheres at radius r"


def add_parser(sub) -> None:
    p = exp.experiment_parser(sub, NAME, HELP)
    exp.add_grid_arguments(p, "0.01,0.1,0.3,1,3,10,100", "radius ratios r/r_ref",
                           [("--dims", "10,30,100,300", "subspace dimensions d"),
                            ("--kinds", "hyperplane,hypersphere", None)],
                           n_repeats_help="random (init, subspace) draws")
    exp.add_training_arguments(p, epochs=10, lr=3e-2, lr_help="learning rate of theta",
                               optimizers=("adam", "sgd"), projection=True)
    p.add_argument("--full-lr", type=float, default=1e-3, help="learning rate in full space")
    p.add_argument("--no-full", action="store_true", help="skip the full-space baseline")


def run(args) -> int:
    from ..experiments import SUBSPACE_COLUMNS, finalize_subspace_train, subspace_train

    radii = parse_floats(args.radii, "--radii")
    dims = parse_ints(args.dims, "--dims")
    kinds = list(dict.fromkeys(k.strip() for k in args.kinds.split(",") if k.strip()))
    if not kinds or any(k not in SUBSPACE_KINDS for k in kinds):
        raise CLIError(f"--kinds must be hyperplane and/or hypersphere, got {args.kinds!r}")
    exp.positives(args, "n_repeats")
    exp.positive(args.epochs, "--epochs", 0)
    exp.positives(args, "batch_size")
    exp.learning_rates(args, "lr", "full_lr")
    (X, y, Xv, yv, model), out, folder = exp.open_run(
        args, "subspace_train", SUBSPACE_COLUMNS, radii=radii, dims=sorted(set(dims)),
        kinds=kinds)
    subspace_train(model, X, y, Xv, yv, radii=radii, dims=dims, kinds=kinds,
                   n_repeats=args.n_repeats, reference=args.reference,
                   projection=args.projection, optimizer=args.optimizer, lr=args.lr,
                   full_space=not args.no_full, full_lr=args.full_lr, epochs=args.epochs,
                   batch_size=args.batch_size, **exp.run_options(args, folder))
    return exp.finish_run(folder, out, finalize_subspace_train,
                          f"training in random subspaces: {exp.title_of(args)}",
                          ", intrinsic_dimension.csv and subspace_train.png")
