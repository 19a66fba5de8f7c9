"""The ``goldisk`` command-line tool: one subcommand per experiment."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from . import (
    _decompose,
    _reproduce,
    _select,
    _spectrum,
    _subspace_train,
    _sweep,
    _trainability,
    _trajectory,
)
from ._common import CLIError, _one_line_errors

__all__ = ["main", "build_parser"]

SUBCOMMANDS = [_sweep, _subspace_train, _select, _trajectory, _decompose, _reproduce, _spectrum,
               _trainability]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="goldisk",
        description="Study the Goldilocks zone of neural-network initialization.",
    )
    _one_line_errors(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
        sub.choices[module.NAME].set_defaults(func=module.run)
        _show_defaults(sub.choices[module.NAME])
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default: ...)`` to every option's help that does not state its default."""
    for action in parser._actions:
        if (action.help is argparse.SUPPRESS or action.nargs == 0  # flags: no value
                or action.default is None or action.default is argparse.SUPPRESS
                or "default" in (action.help or "")):
            continue
        action.help = f"{action.help} (default: %(default)s)" if action.help \
            else "default: %(default)s"


def _subparser(parser, command: str) -> argparse.ArgumentParser:
    actions = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(actions).choices[command]


def _as_option(msg: str, parser, args) -> str:
    """A library error that starts with a parameter name (``ratio must be ...``) names the
    subcommand's option instead (``--ratio must be ...``) when one of that name exists."""
    word = msg.split(" ", 1)[0]
    options = _subparser(parser, args.command)._option_string_actions
    option = "--" + word.replace("_", "-")
    return option + msg[len(word):] if word.isidentifier() and option in options else msg


def _remove_if_resultless(out: Path) -> None:
    """Remove the folder a failed run created, when it holds no result yet (only
    ``config.json`` files and CSVs without a data row): an option rejected by an
    experiment's own checks leaves nothing behind, finished units are kept."""
    if not out.is_dir():
        return
    for f in out.rglob("*"):
        if f.is_dir() or f.name == "config.json":
            continue
        if f.suffix == ".csv" and len(f.read_text(encoding="utf-8").splitlines()) <= 1:
            continue
        return
    shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> int:
    """Entry point of the console script; user errors exit with status 2 and one line."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the subcommand, in one line, like its own option errors
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    out = Path(args.out) if getattr(args, "out", None) else None
    fresh = out is not None and not out.exists()
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, TypeError) as exc:
        msg = str(exc) if isinstance(exc, CLIError) else _as_option(str(exc), parser, args)
        print(f"goldisk {args.command}: error: {msg}", file=sys.stderr)
        if fresh:
            _remove_if_resultless(out)
        return 2
    except KeyboardInterrupt:
        print(f"goldisk {args.command}: interrupted; rerun with --resume to continue",
              file=sys.stderr)
        return 130
    except Exception:  # a bug or an unexpected failure: the traceback, and no empty folder
        if fresh:
            _remove_if_resultless(out)
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
