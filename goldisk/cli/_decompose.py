"""``goldisk decompose``: Gauss-Newton split, temperature, state and trainability
(Vysogorets, Dawid & Kempe)."""

from __future__ import annotations

from .._names import REFERENCES
from . import _reproduce as exp
from ._common import CLIError, parse_floats

NAME = "decompose"
HELP = "G-term/H-term curvature, temperature, model state and trainability against scale"


def add_parser(sub) -> None:
    from .._names import DECOMPOSE_PARTS

    p = exp.experiment_parser(sub, NAME, HELP, bias_default=False)
    p.add_argument("--parts", default=",".join(DECOMPOSE_PARTS), help="subset of %(default)s")
    p.add_argument("--alphas", default=None,
                   help="scales of the init (default: 10^[-3..3] in steps of 0.25)")
    p.add_argument("--dim", type=int, default=50, help="subspace dimension")
    p.add_argument("--n-subspaces", type=int, default=3)
    p.add_argument("--scheme", default="he", choices=REFERENCES,
                   help="init drawn before the global scaling by alpha (He/Kaiming, as "
                        "Vysogorets et al.; the other subcommands start from Xavier)")
    p.add_argument("--hessian-samples", type=int, default=None,
                   help="samples in the Hessian (default: the whole training split)")
    p.add_argument("--n-inits", type=int, default=60)
    p.add_argument("--init-alpha-range", default="0.1,10", help="log-uniform range of inits")
    p.add_argument("--init-dim", type=int, default=20)
    p.add_argument("--train-alphas", default=None,
                   help="scales trained (default: 10^[-2..2] in steps of 0.5)")
    p.add_argument("--optimizers", default="gd,adam")
    p.add_argument("--gd-lr0", type=float, default=0.1, help="GD learning rate lr0/alpha^(L-2)")
    p.add_argument("--adam-lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=300, help="full-batch training steps")
    p.add_argument("--records", type=int, default=30, help="records over the training steps")


def run(args) -> int:
    from ..experiments import DECOMPOSE_COLUMNS, DECOMPOSE_PARTS, decompose, finalize_decompose

    parts = list(dict.fromkeys(s.strip() for s in args.parts.split(",") if s.strip()))
    if not parts or any(s not in DECOMPOSE_PARTS for s in parts):
        raise CLIError(f"--parts must be a subset of {','.join(DECOMPOSE_PARTS)}, "
                       f"got {args.parts!r}")
    optimizers = [s.strip() for s in args.optimizers.split(",") if s.strip()]
    if not optimizers or any(o not in ("gd", "adam") for o in optimizers):
        raise CLIError(f"--optimizers must be gd and/or adam, got {args.optimizers!r}")
    alphas = parse_floats(args.alphas, "--alphas") if args.alphas else None
    train_alphas = parse_floats(args.train_alphas, "--train-alphas") if args.train_alphas \
        else None
    rng = parse_floats(args.init_alpha_range, "--init-alpha-range")
    if len(rng) != 2:
        raise CLIError(f"--init-alpha-range needs two numbers lo,hi; got {args.init_alpha_range}")
    exp.positives(args, "dim", "n_subspaces", "n_inits", "init_dim", "steps", "records")
    exp.learning_rates(args, "gd_lr0", "adam_lr")  # the experiment calls both "lr"
    if args.hessian_samples is not None:
        exp.positive(args.hessian_samples, "--hessian-samples")
    (X, y, Xv, yv, model), out, folder = exp.open_run(
        args, "decompose", DECOMPOSE_COLUMNS, parts=parts, optimizers=optimizers,
        alphas=alphas, train_alphas=train_alphas,
        of_model=lambda m: {"depth": getattr(m, "depth", None),
                            "homogeneous": getattr(m, "homogeneous", None)})
    decompose(model, X, y, Xv, yv, parts=parts, alphas=alphas, dim=args.dim,
              n_subspaces=args.n_subspaces, scheme=args.scheme,
              hessian_samples=args.hessian_samples, n_inits=args.n_inits,
              init_alpha_range=rng, init_dim=args.init_dim, train_alphas=train_alphas,
              optimizers=optimizers, gd_lr0=args.gd_lr0, adam_lr=args.adam_lr,
              steps=args.steps, records=args.records, **exp.run_options(args, folder))
    return exp.finish_run(folder, out, finalize_decompose,
                          f"deconstructing the zone: {exp.title_of(args)}",
                          lambda summary: f" and {', '.join(summary['figures'])}")
