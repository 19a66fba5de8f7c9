"""``goldisk trajectory``: the radius during training, free and held fixed (Chang)."""

from __future__ import annotations

from . import _reproduce as exp
from ._common import CLIError, parse_floats

NAME = "trajectory"
HELP = "radius of the weights during training from small and large radii (Chang)"


def add_parser(sub) -> None:
    p = exp.experiment_parser(sub, NAME, HELP)
    exp.add_grid_arguments(p, "0.01,0.03,0.1,0.3,1,3,10", "initial radius ratios r0/r_ref",
                           [("--modes", "free,fixed", "free and/or fixed (radius held)")])
    exp.add_training_arguments(p, epochs=15)
    p.add_argument("--records-per-epoch", type=int, default=4)


def run(args) -> int:
    from ..experiments import TRAJECTORY_COLUMNS, finalize_trajectory, trajectory

    radii = parse_floats(args.radii, "--radii")
    modes = list(dict.fromkeys(m.strip() for m in args.modes.split(",") if m.strip()))
    if not modes or any(m not in ("free", "fixed") for m in modes):
        raise CLIError(f"--modes must be free and/or fixed, got {args.modes!r}")
    exp.positives(args, "n_repeats", "batch_size", "records_per_epoch")
    exp.positive(args.epochs, "--epochs", 0)
    exp.learning_rates(args, "lr")
    (X, y, Xv, yv, model), out, folder = exp.open_run(args, "trajectory", TRAJECTORY_COLUMNS,
                                                      radii=radii, modes=modes)
    trajectory(model, X, y, Xv, yv, radii=radii, modes=modes, n_repeats=args.n_repeats,
               reference=args.reference, optimizer=args.optimizer, lr=args.lr,
               epochs=args.epochs, batch_size=args.batch_size,
               records_per_epoch=args.records_per_epoch, **exp.run_options(args, folder))
    return exp.finish_run(folder, out, finalize_trajectory,
                          f"radius during training: {exp.title_of(args)}",
                          ", trajectory_fits.csv and trajectory.png")
