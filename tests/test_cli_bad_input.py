"""Bad-input rows for the command-line tool (goldisk/cli/): `goldisk sweep` exits with status
2, one readable stderr line naming the option and nothing written to the output folder.

The row format and the runner live in ``tests/_bad_input_cases.py``;
``tests/test_bad_input.py`` checks the table as a whole.
"""

from __future__ import annotations

import pytest
from _bad_input_cases import Cli, case, run_row


def _a_file_above(out):
    (out.parent / "afile").write_text("not a folder")


def _corrupt_config(out):
    out.mkdir()
    (out / "config.json").write_text('{"dims": [2], ')


def _existing(out):
    out.mkdir()
    (out / "notes.txt").write_text("mine")


def _a_file(out):
    out.write_text("not a folder")


def _other_settings(out):
    out.mkdir()
    (out / "config.json").write_text('{"dims": [7], "radii": [1.0]}')


CASES = [
    case("cli-radii-negative", Cli(["--radii", "-1"]), 2, "--radii"),
    case("cli-radii-zero", Cli(["--radii", "0,1"]), 2, "--radii"),
    case("cli-radii-nan", Cli(["--radii", "nan"]), 2, "--radii"),
    case("cli-radii-inf", Cli(["--radii", "1,inf"]), 2, "--radii"),
    case("cli-radii-empty", Cli(["--radii", ","]), 2, "--radii"),
    case("cli-dims-zero", Cli(["--dims", "0"]), 2, "--dims"),
    case("cli-dims-above-D", Cli(["--dims", "100000"]), 2, r"--dims must be <= D="),
    case("cli-hidden-zero", Cli(["--hidden", "0"]), 2, "--hidden"),
    case("cli-batch-size-zero", Cli(["--batch-size", "0"]), 2, "--batch-size"),
    case("cli-hessian-samples-zero", Cli(["--hessian-samples", "0"]), 2, "--hessian-samples"),
    case("cli-max-samples-zero", Cli(["--max-samples", "0"]), 2, "--max-samples"),
    case("cli-seed-negative", Cli(["--seed", "-1"]), 2, "--seed"),
    case("cli-option-unknown", Cli(["--bogus", "1"]), 2,
         r"goldisk sweep: error: unrecognized arguments: --bogus 1"),
    case("cli-scheduler-unreachable-dask",
         Cli(["--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"]), 2,
         r"--scheduler tcp://127\.0\.0\.1:1: nothing accepts connections at 127\.0\.0\.1:1"),
    case("cli-scheduler-unreachable-ray", Cli(["--backend", "ray", "--scheduler", "127.0.0.1:1"]),
         2, r"--scheduler 127\.0\.0\.1:1: nothing accepts connections.*head node"),
    case("cli-device-unknown", Cli(["--device", "banana"]), 2, "--device"),
    case("cli-device-cuda-missing", Cli(["--device", "cuda:0"]), 2, "--device"),
    case("cli-device-meta", Cli(["--device", "meta"]), 2, r"--device='meta' holds no data"),
    case("cli-device-mps-missing", Cli(["--device", "mps"]), 2,
         r"--device='mps' cannot be used here \(.{1,100}\); use 'cpu' or 'cuda'"),
    case("cli-projection-unknown", Cli(["--projection", "gaussian"]), 2, "--projection"),
    case("cli-kind-unknown", Cli(["--kind", "ball"]), 2, "--kind"),
    case("cli-reference-unknown", Cli(["--reference", "glorot"]), 2, "--reference"),
    case("cli-dataset-unknown", Cli(["--dataset", "iris"]), 2, "--dataset"),
    case("cli-n-subspaces-not-int", Cli(["--n-subspaces", "two"]), 2, "--n-subspaces"),
    case("cli-model-lenet5-on-digits", Cli(["--model", "lenet5"]), 2,
         r"--model lenet5: image_size must be 28 or 32"),
    case("cli-data-root-missing", Cli(["--dataset", "mnist", "--data-root", "/nonexistent/x"]),
         2, "--data-root"),
    case("cli-data-root-empty", Cli(["--dataset", "cifar10", "--data-root", "{tmp}"]), 2,
         r"no cifar10 dataset.*--download"),
    case("cli-out-exists", Cli([], setup=_existing, keep=("notes.txt",)), 2,
         r"--out .* already exists; pass --resume .* or --force"),
    case("cli-out-is-a-file", Cli([], setup=_a_file), 2, r"--out .* is not a folder"),
    case("cli-force-foreign-folder", Cli(["--force"], setup=_existing, keep=("notes.txt",)), 2,
         r"--out .* holds files goldisk did not write .*--force only replaces goldisk output"),
    case("cli-resume-other-settings", Cli(["--resume"], setup=_other_settings,
                                          keep=("config.json",)), 2,
         r"--resume with different settings \(dims"),
    case("i17-c16-out-below-a-file", Cli(["--out", "{tmp}/afile/run"], setup=_a_file_above),
         2, r"--out .*afile/run lies below .*afile, which is a file"),
    case("i17-c16-out-in-proc", Cli(["--out", "/proc/goldisk-x/run"]), 2,
         r"--out /proc/goldisk-x/run cannot be created in /proc"),
    case("i17-c17-resume-corrupt-config", Cli(["--resume"], setup=_corrupt_config,
                                              keep=("config.json",)), 2,
         r"--resume: .*config.json cannot be read \(JSONDecodeError"),
]


@pytest.mark.parametrize("target, expect, match, check", CASES)
def test_bad_input(target, expect, match, check, tmp_path, capsys):
    run_row(target, expect, match, check, tmp_path, capsys)
