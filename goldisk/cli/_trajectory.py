"""``goldisk trajectory``: the radius during training, free and held fixed (Chang)."""

from __future__ import annotations

from .._names import REFERENCES
from ._common import CLIError, add_common_arguments, parse_floats, prepare_output
from ._reproduce import (
    add_model_arguments,
    config_of,
    learning_rates,
    positive,
    prepare,
    title_of,
)

NAME = "trajectory"
HELP = "radius of the weights during training from small and large radii (Chang)"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP)
    add_common_arguments(p, "out/trajectory")
    add_model_arguments(p)
    p.add_argument("--radii", default="0.01,0.03,0.1,0.3,1,3,10",
                   help="initial radius ratios r0/r_ref (default: %(default)s)")
    p.add_argument("--modes", default="free,fixed", help="free and/or fixed (radius held)")
    p.add_argument("--n-repeats", type=int, default=2)
    p.add_argument("--reference", default="xavier", choices=REFERENCES)
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd", "gd"))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--records-per-epoch", type=int, default=4)


def run(args) -> int:
    from ..experiments import TRAJECTORY_COLUMNS, ResultFolder, finalize_trajectory, trajectory

    radii = parse_floats(args.radii, "--radii")
    modes = list(dict.fromkeys(m.strip() for m in args.modes.split(",") if m.strip()))
    if not modes or any(m not in ("free", "fixed") for m in modes):
        raise CLIError(f"--modes must be free and/or fixed, got {args.modes!r}")
    for name in ("n_repeats", "batch_size", "records_per_epoch"):
        positive(getattr(args, name), "--" + name.replace("_", "-"))
    positive(args.epochs, "--epochs", 0)
    learning_rates(args, "lr")
    X, y, Xv, yv, model = prepare(args)
    out = prepare_output(args.out, args.force, args.resume)
    folder = ResultFolder(out, "trajectory", TRAJECTORY_COLUMNS,
                          config_of(args, radii=radii, modes=modes), args.resume, args.device)
    trajectory(model, X, y, Xv, yv, radii=radii, modes=modes, n_repeats=args.n_repeats,
               reference=args.reference, optimizer=args.optimizer, lr=args.lr,
               epochs=args.epochs, batch_size=args.batch_size,
               records_per_epoch=args.records_per_epoch, device=args.device,
               random_state=args.seed, progress=not args.no_progress, done=folder.done,
               on_result=folder.save)
    df = folder.read()
    summary = finalize_trajectory(df, out, title=f"radius during training: {title_of(args)}")
    seconds = folder.finish(summary=summary)
    print(f"wrote {folder.csv} ({len(df)} rows), trajectory_fits.csv and trajectory.png "
          f"in {seconds:.1f} s")
    return 0
