"""``goldisk trainability``: which init statistic predicts training speed, measured."""

from __future__ import annotations

from ._common import CLIError, add_common_arguments, parse_floats, parse_ints, prepare_output
from ._reproduce import config_of, positive

NAME = "trainability"
HELP = ("every init statistic (zero-cost proxies, NTK condition number, curvature, "
        "lambda_max) at many inits against their accuracy after Adam and GD training")


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP)
    add_common_arguments(p, "out/trainability")
    p.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn, lenet5, ...")
    p.add_argument("--hidden", default="32,32", help="MLP widths (default: %(default)s)")
    p.add_argument("--radii", default="0.5,1,2,4", help="radius ratios r/r_ref")
    p.add_argument("--temperatures", default="1,4", help="softmax temperatures")
    p.add_argument("--n-seeds", type=int, default=2, help="seeds per grid point")
    p.add_argument("--epochs", default="1,5,20", help="accuracy after these epochs")
    p.add_argument("--adam-lr", default="auto",
                   help="Adam's learning rate, or 'auto' (suggest_lr per init)")
    p.add_argument("--gd-factor", type=float, default=1.0,
                   help="GD's rate as a multiple of 2/lambda_max(init)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--stat-samples", type=int, default=500,
                   help="training samples for the statistics")
    p.add_argument("--n-batch", type=int, default=64, help="batch of ntk_cond and jacob_cov")
    p.add_argument("--dim", type=int, default=20, help="subspace of the curvature statistics")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")


def run(args) -> int:
    import pandas as pd

    from ..experiments import (
        ResultFolder,
        build_model,
        plot_trainability,
        split_dataset,
        trainability,
        trainability_columns,
        trainability_correlations,
    )
    from ._common import load_data

    radii = parse_floats(args.radii, "--radii")
    temps = parse_floats(args.temperatures, "--temperatures")
    epochs = parse_ints(args.epochs, "--epochs")
    hidden = parse_ints(args.hidden, "--hidden")
    for name in ("n_seeds", "batch_size", "stat_samples", "n_batch", "dim", "bootstrap"):
        positive(getattr(args, name), "--" + name.replace("_", "-"))
    adam_lr = args.adam_lr
    if adam_lr != "auto":
        try:
            adam_lr = float(adam_lr)
        except ValueError:
            raise CLIError(f"--adam-lr must be a number or 'auto', got {args.adam_lr!r}") from None
    names = list(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip()))
    ds = load_data(args)
    try:
        models = {m: build_model(m, ds.n_features, ds.n_classes, hidden) for m in names}
    except (ValueError, TypeError) as exc:
        raise CLIError(f"--models {args.models}: {exc}") from None
    if not models:
        raise CLIError("--models must name at least one model, e.g. mlp,cnn")
    train, val = split_dataset(ds, random_state=args.seed)
    X, Xv = train.X.reshape(len(train.X), -1), val.X.reshape(len(val.X), -1)
    out = prepare_output(args.out, args.force, args.resume)
    columns = trainability_columns(sorted(set(epochs)))
    folder = ResultFolder(out, "trainability", columns, config_of(args), args.resume,
                          args.device)
    trainability(models, X, train.y, Xv, val.y, radii=radii, temperatures=temps,
                 n_seeds=args.n_seeds, epochs=epochs, adam_lr=adam_lr,
                 gd_factor=args.gd_factor,
                 batch_size=args.batch_size, stat_samples=args.stat_samples,
                 n_batch=args.n_batch, dim=args.dim, random_state=args.seed,
                 progress=not args.no_progress, done=folder.done, on_result=folder.save)
    df = folder.read()
    corr = trainability_correlations(df, n_boot=args.bootstrap, random_state=args.seed)
    corr.to_csv(out / "correlations.csv", index=False)
    plot_trainability(corr, out / "trainability.png",
                      title=f"{args.dataset}: init statistic vs accuracy ({len(df)} inits)")
    best = (corr[(corr["group"] == "all")]
            .assign(signed=lambda d: d["spearman"] * d["claimed"])
            .sort_values("signed", ascending=False))
    pd.set_option("display.width", 120)
    print(best.head(8)[["statistic", "optimizer", "epoch", "spearman", "ci_low", "ci_high",
                        "verdict"]].to_string(index=False))
    seconds = folder.finish()
    print(f"wrote {folder.csv} ({len(df)} inits), correlations.csv and trainability.png "
          f"in {seconds:.1f} s")
    return 0
