"""``goldisk reproduce``: the radius sweep and every experiment, plus a markdown report.

Also holds the argument helpers shared by the experiment subcommands (model options,
data loading and splitting, the configuration dict).
"""

from __future__ import annotations

from ._common import (
    CLIError,
    add_common_arguments,
    add_model_choice,
    check_device,
    dataset_kwargs,
    load_data,
    parse_ints,
    prepare_output,
)

NAME = "reproduce"
HELP = "run the sweep and all experiments at the default small scale; write report.md"


def add_model_arguments(p, bias_default: bool = True) -> None:
    """``--model``, ``--hidden``, ``--activation`` and ``--no-bias`` (or ``--bias``)."""
    add_model_choice(p)
    p.add_argument("--activation", default="relu", choices=("relu", "tanh"))
    if bias_default:
        p.add_argument("--no-bias", dest="bias", action="store_false",
                       help="bias-free (homogeneous) layers")
    else:
        p.add_argument("--bias", dest="bias", action="store_true",
                       help="add biases (the net is then not homogeneous)")


def experiment_parser(sub, name: str, help: str, bias_default: bool = True):
    """An experiment subcommand's parser: the common and model options, ``--out out/<name>``."""
    p = sub.add_parser(name, help=help, description=help)
    add_common_arguments(p, f"out/{name}")
    add_model_arguments(p, bias_default)
    return p


def add_grid_arguments(p, radii: str, radii_help: str, lists, n_repeats_help=None) -> None:
    """The grid of an experiment that trains from several radii: ``--radii`` (ratios, with
    ``radii_help``), its own comma-separated ``lists`` (``(flag, default, help)``) and
    ``--n-repeats`` (independent draws, 2 by default)."""
    p.add_argument("--radii", default=radii, help=f"{radii_help} (default: %(default)s)")
    for flag, default, help in lists:
        p.add_argument(flag, default=default, help=help)
    p.add_argument("--n-repeats", type=int, default=2, help=n_repeats_help)


def add_training_arguments(p, *, epochs: int, lr: float = 1e-3, lr_help=None,
                           optimizers=("adam", "sgd", "gd"), projection: bool = False) -> None:
    """``--reference`` (``--projection``), ``--optimizer``, ``--lr``, ``--epochs`` and
    ``--batch-size``: the options of the experiments that train from a reference init."""
    from .._names import REFERENCES, SUBSPACE_PROJECTIONS

    p.add_argument("--reference", default="xavier", choices=REFERENCES)
    if projection:
        p.add_argument("--projection", default="dense", choices=SUBSPACE_PROJECTIONS)
    p.add_argument("--optimizer", default="adam", choices=optimizers)
    p.add_argument("--lr", type=float, default=lr, help=lr_help)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=64)


def open_run(args, name: str, columns, of_model=None, **config):
    """``(data, out, folder)`` of an experiment subcommand, after every check: ``data`` is
    ``prepare(args)``, ``folder`` the ``ResultFolder`` of ``<name>.csv`` in ``--out``
    (its configuration: the options, ``config`` and ``of_model(model)``)."""
    from ..experiments import ResultFolder

    data = prepare(args)
    out = prepare_output(args.out, args.force, args.resume)
    config.update(of_model(data[-1]) if of_model is not None else {})
    folder = ResultFolder(out, name, columns, config_of(args, **config), args.resume,
                          args.device)
    return data, out, folder


def finish_run(folder, out, finalize, title: str, also, **kwargs) -> int:
    """Read the run's rows, write its summary (``finalize``), close the folder and say what
    was written (``also``: the files besides the CSV, or a function of the summary)."""
    df = folder.read()
    summary = finalize(df, out, title=title, **kwargs)
    seconds = folder.finish(summary=summary)
    also = also(summary) if callable(also) else also
    print(f"wrote {folder.csv} ({len(df)} rows){also} in {seconds:.1f} s")
    return 0


def run_options(args, folder) -> dict:
    """The keyword arguments every experiment takes from the common options."""
    return {"device": args.device, "random_state": args.seed, "progress": not args.no_progress,
            "done": folder.done, "on_result": folder.save}


def prepare(args):
    """``(train, val, model)`` from the common and model options (25% stratified split)."""
    from ..experiments import build_model, split_dataset

    check_device(args.device)
    hidden = parse_ints(args.hidden, "--hidden")
    if any(h < 1 for h in hidden):
        raise CLIError(f"--hidden widths must be >= 1, got {args.hidden}")
    ds = load_data(args)
    if len(ds) < 8:
        raise CLIError(f"need at least 8 samples to split into train and validation, got {len(ds)}")
    try:
        model = build_model(args.model, ds.n_features, ds.n_classes, hidden, args.activation,
                            args.bias)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"--model {args.model}: {exc}") from None
    try:
        train, val = split_dataset(ds, random_state=args.seed)
    except ValueError as exc:  # a stratified split needs >= 2 samples of every class
        raise CLIError(f"{len(ds)} samples cannot be split 75/25 by class ({exc}); pass a "
                       "larger --max-samples") from None
    X, Xv = train.X.reshape(len(train.X), -1), val.X.reshape(len(val.X), -1)
    return X, train.y, Xv, val.y, model


def config_of(args, **extra) -> dict:
    return {"command": args.command, **{k: v for k, v in vars(args).items() if k != "func"},
            **extra}


def title_of(args) -> str:
    arch = f"{args.model} {args.hidden}" if args.model == "mlp" else args.model
    return f"{args.dataset}, {arch}{'' if args.bias else ' (bias-free)'}"


def positive(value, name: str, minimum=1):
    if value is None or value < minimum:
        raise CLIError(f"{name} must be >= {minimum}, got {value}")
    return value


def positives(args, *names: str, minimum=1) -> None:
    """:func:`positive` on each option ``names`` (attribute names, e.g. ``"n_repeats"``)."""
    for name in names:
        positive(getattr(args, name), "--" + name.replace("_", "-"), minimum)


def learning_rates(args, *names: str) -> None:
    """Each learning-rate option must be finite and > 0 (checked before ``--out`` is made)."""
    import math

    for name in names:
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise CLIError(f"--{name.replace('_', '-')} must be finite and > 0, got {value}")


def add_parser(sub) -> None:
    from .._names import EXPERIMENTS

    p = sub.add_parser(NAME, help=HELP, description=HELP)
    add_common_arguments(p, "out/reproduce")
    add_model_choice(p)
    p.add_argument("--experiments", default=",".join(EXPERIMENTS),
                   help="comma-separated subset of %(default)s")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test sizes (seconds) instead of the default small scale")


def run(args) -> int:
    from ..experiments import EXPERIMENTS, reproduce

    check_device(args.device)
    exps = list(dict.fromkeys(e.strip() for e in args.experiments.split(",") if e.strip()))
    bad = [e for e in exps if e not in EXPERIMENTS]
    if bad or not exps:
        raise CLIError(f"--experiments must be a subset of {','.join(EXPERIMENTS)}; got "
                       f"{args.experiments!r}")
    hidden = parse_ints(args.hidden, "--hidden")
    ds = load_data(args)  # validate the data and model options before creating the folder
    try:
        from ..experiments import build_model

        build_model(args.model, ds.n_features, ds.n_classes, hidden)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"--model {args.model}: {exc}") from None
    out = prepare_output(args.out, args.force, args.resume)
    table = reproduce(out, dataset=args.dataset, data_root=args.data_root,
                      download=args.download, model=args.model, hidden=hidden, seed=args.seed,
                      device=args.device, max_samples=args.max_samples, experiments=exps,
                      quick=args.quick, resume=args.resume, progress=not args.no_progress,
                      data_kwargs={k: v for k, v in dataset_kwargs(args).items()
                                   if k not in ("root", "download")})
    for row in table.itertuples():
        print(f"{row.experiment}: {row.rows} rows in {row.seconds:.1f} s")
    print(f"wrote {out / 'report.md'}")
    return 0
