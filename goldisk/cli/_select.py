"""``goldisk select``: select inits by curvature or loss and train them (Fort Fig. 6)."""

from __future__ import annotations

from . import _reproduce as exp

NAME = "select"
HELP = "curvature and loss at many inits against their training speed (Fort Fig. 6)"


def add_parser(sub) -> None:
    p = exp.experiment_parser(sub, NAME, HELP)
    p.add_argument("--n-inits", type=int, default=60)
    p.add_argument("--dim", type=int, default=50, help="dimension of each init's hyperplane")
    p.add_argument("--ratio", type=float, default=1.0, help="radius of the inits, r / r_ref")
    p.add_argument("--hessian-samples", type=int, default=500)
    exp.add_training_arguments(p, epochs=5, projection=True)
    p.add_argument("--permutations", type=int, default=2000, help="for the permutation test")


def run(args) -> int:
    from ..experiments import SELECT_COLUMNS, finalize_select, select

    exp.positives(args, "n_inits", "dim", "hessian_samples", "batch_size", "epochs")
    exp.positive(args.permutations, "--permutations", 0)
    exp.learning_rates(args, "lr")
    (X, y, Xv, yv, model), out, folder = exp.open_run(args, "select", SELECT_COLUMNS)
    select(model, X, y, Xv, yv, n_inits=args.n_inits, dim=args.dim, ratio=args.ratio,
           reference=args.reference, projection=args.projection,
           hessian_samples=args.hessian_samples, optimizer=args.optimizer, lr=args.lr,
           epochs=args.epochs, batch_size=args.batch_size, **exp.run_options(args, folder))
    return exp.finish_run(folder, out, finalize_select, f"selecting inits: {exp.title_of(args)}",
                          ", select_analysis.csv, select_correlations.csv, select.png and "
                          "select_slopes.png", random_state=args.seed)
