"""Every experiment subcommand at a tiny size: outputs, resuming, errors, the report."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from goldisk.cli import main
from goldisk.experiments import (
    DECOMPOSE_COLUMNS,
    SELECT_COLUMNS,
    SUBSPACE_COLUMNS,
    TRAJECTORY_COLUMNS,
    intrinsic_dimension,
)

TINY = ["--dataset", "circles", "--max-samples", "120", "--hidden", "8", "--no-progress"]
COMMANDS = {
    "subspace-train": (["--radii", "0.1,1,10", "--dims", "2,6", "--n-repeats", "1",
                        "--epochs", "2", "--lr", "0.05"], "subspace_train", SUBSPACE_COLUMNS,
                       ["subspace_train.png"]),
    "select": (["--n-inits", "6", "--dim", "4", "--epochs", "2", "--hessian-samples", "60",
                "--permutations", "99"], "select", SELECT_COLUMNS,
               ["select.png", "select_slopes.png"]),
    "trajectory": (["--radii", "0.1,3", "--epochs", "2", "--n-repeats", "1",
                    "--records-per-epoch", "2"], "trajectory", TRAJECTORY_COLUMNS,
                   ["trajectory.png"]),
    "decompose": (["--alphas", "0.1,1,10", "--dim", "4", "--n-subspaces", "2", "--n-inits",
                   "6", "--init-dim", "3", "--train-alphas", "0.3,3", "--steps", "6",
                   "--records", "3"], "decompose", DECOMPOSE_COLUMNS,
                  ["decompose_curvature.png", "decompose_inits.png",
                   "decompose_training.png"]),
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    done = {}
    for name, (args, *_rest) in COMMANDS.items():
        out = root / name
        assert main([name, "--out", str(out), *TINY, *args]) == 0
        done[name] = out
    return done


@pytest.mark.parametrize("name", list(COMMANDS))
def test_subcommand_outputs(outputs, name):
    _, stem, columns, figures = COMMANDS[name]
    out = outputs[name]
    df = pd.read_csv(out / f"{stem}.csv")
    assert list(df.columns) == columns and len(df) > 0
    assert (df.groupby("unit").size() == df.groupby("unit")["unit_rows"].first()).all()
    for fig in figures:
        png = out / fig
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 5_000 < png.stat().st_size < 300_000
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["command"] == name and cfg["dataset"] == "circles" and cfg["seed"] == 0
    assert {"torch", "numpy", "python", "device"} <= set(cfg["environment"])
    assert cfg["rows"] == len(df) and cfg["seconds"] > 0 and "summary" in cfg


def test_subspace_train_sanity(outputs):
    out = outputs["subspace-train"]
    df = pd.read_csv(out / "subspace_train.csv")
    assert df["val_acc"].between(0, 1).all()
    sphere = df[df["kind"] == "hypersphere"]
    np.testing.assert_allclose(sphere["final_radius"], sphere["radius"], rtol=1e-5)
    dint = pd.read_csv(out / "intrinsic_dimension.csv")
    assert set(dint["relative"]) == {True, False}
    # d_int is monotone in the threshold, for both conventions
    for relative in (True, False):
        d = np.stack([intrinsic_dimension(df, t, relative=relative)
                      .sort_values(["kind", "radius_ratio"])["d_int"].to_numpy()
                      for t in np.linspace(0.1, 1.0, 10)])
        d = np.where(np.isnan(d), np.inf, d)
        assert (d[1:] >= d[:-1]).all()


def test_decompose_sanity(outputs):
    df = pd.read_csv(outputs["decompose"] / "decompose.csv")
    sc = df[df["part"] == "scale"].set_index(["repeat", "alpha"])
    tp = df[df["part"] == "temperature"].set_index(["repeat", "alpha"])
    # temperature alpha^-L recreates the curvature statistics of the scale alpha
    np.testing.assert_allclose(sc["trace_ratio"], tp.loc[sc.index, "trace_ratio"], atol=1e-8)
    assert df["homogeneous"].all() and (df["depth"] == 2).all()
    cfg = json.loads((outputs["decompose"] / "config.json").read_text())
    assert cfg["bias"] is False and cfg["homogeneous"] is True


def test_existing_output_refused_then_forced(outputs, capsys):
    out = outputs["trajectory"]
    args = ["trajectory", "--out", str(out), *TINY, *COMMANDS["trajectory"][0]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and len(err.splitlines()) == 1


def test_resume_finishes_a_killed_run_identically(tmp_path):
    args = ["subspace-train", *TINY, *COMMANDS["subspace-train"][0]]
    full = tmp_path / "full"
    assert main([*args, "--out", str(full)]) == 0
    ref = pd.read_csv(full / "subspace_train.csv")
    # simulate a run killed while writing: keep 4 units and half a line of the fifth
    text = (full / "subspace_train.csv").read_text().splitlines(keepends=True)
    part = tmp_path / "part"
    part.mkdir()
    (part / "subspace_train.csv").write_text("".join(text[:5]) + text[5][:20])
    (part / "config.json").write_text((full / "config.json").read_text())
    assert main([*args, "--out", str(part), "--resume"]) == 0
    got = pd.read_csv(part / "subspace_train.csv")
    assert len(got) == len(ref) and got["unit"].is_unique
    cols = ["val_acc", "train_loss", "final_radius"]
    a = got.set_index("unit").loc[ref["unit"], cols].to_numpy(float)
    np.testing.assert_allclose(a, ref[cols].to_numpy(float))
    # resuming with other settings is refused
    assert main([*args, "--out", str(part), "--resume", "--epochs", "3"]) == 2


#: one option per command that changes results but was once left out of the resume check
OTHER_SETTING = {"subspace-train": ["--reference", "he"], "select": ["--projection", "sparse"],
                 "trajectory": ["--optimizer", "sgd"], "decompose": ["--scheme", "xavier"]}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_resume_refuses_any_changed_setting_and_allows_execution_options(outputs, name,
                                                                         capsys):
    out = outputs[name]
    args = [name, "--out", str(out), *TINY, *COMMANDS[name][0], "--resume"]
    before = (out / "config.json").read_text()
    assert main([*args, *OTHER_SETTING[name]]) == 2
    err = capsys.readouterr().err.strip()
    option = OTHER_SETTING[name][0][2:].replace("-", "_")
    assert f"different settings ({option})" in err and len(err.splitlines()) == 1
    assert (out / "config.json").read_text() == before  # nothing rewritten
    assert main([*args, "--no-progress"]) == 0  # a finished run resumes to itself


@pytest.mark.parametrize("name,bad,msg", [
    ("subspace-train", ["--kinds", "cube"], "--kinds"),
    ("trajectory", ["--modes", "sideways"], "--modes"),
    ("decompose", ["--parts", "scale,foo"], "--parts"),
    ("select", ["--n-inits", "0"], "--n-inits"),
    ("select", ["--device", "cuda:7"] , "cuda"),
    ("reproduce", ["--experiments", "sweep,dance"], "--experiments"),
    # rejected by the experiment's own checks, after the folder was made: it is removed
    ("select", ["--ratio", "-1"], "error: --ratio must be finite and > 0"),
    ("decompose", ["--alphas", "-1"], "error: --alphas must be finite and > 0"),
    ("trajectory", ["--radii", "0"], "error: --radii must be finite and > 0"),
    ("subspace-train", ["--dims", "100000"], "error: --dims must be integers in [1, D="),
    ("decompose", ["--gd-lr0", "-1"], "error: --gd-lr0 must be finite and > 0"),
    ("subspace-train", ["--full-lr", "-1"], "error: --full-lr must be finite and > 0"),
    ("subspace-train", ["--lr", "nan"], "error: --lr must be finite and > 0"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, name, bad, msg):
    if name == "select" and msg == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
    assert main([name, "--out", str(tmp_path / "x"), *TINY, *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_reproduce_quick_writes_the_report(tmp_path):
    out = tmp_path / "rep"
    assert main(["reproduce", "--out", str(out), "--quick", "--dataset", "circles",
                 "--max-samples", "90", "--hidden", "8", "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    for exp in ("sweep", "subspace-train", "select", "trajectory", "decompose"):
        assert (out / exp / "config.json").exists()
    links = [part.split(")")[0] for part in report.split("](")[1:]]
    assert len(links) >= 8
    for link in links:
        assert (out / link).exists(), link
    assert "Fort" in report and "Vysogorets" in report


def test_force_never_deletes_the_current_folder_or_a_foreign_one(tmp_path, monkeypatch, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    monkeypatch.chdir(mine)
    for out in (".", str(tmp_path)):  # the current folder, one above it
        assert main(["trajectory", "--out", out, "--force", *TINY]) == 2
        err = capsys.readouterr().err.strip()
        assert "--force would delete it" in err and len(err.splitlines()) == 1
    assert (mine / "thesis.tex").read_text() == "months of work"


def test_repeated_modes_and_kinds_count_once(tmp_path):
    # `--modes free,free` used to crash, `--kinds hyperplane,hyperplane` to write each unit
    # twice (so every unit looked incomplete and the run reported 0 rows)
    args = ["trajectory", *TINY, *COMMANDS["trajectory"][0]]
    assert main([*args, "--out", str(tmp_path / "t"), "--modes", "free,free"]) == 0
    df = pd.read_csv(tmp_path / "t" / "trajectory.csv")
    assert set(df["mode"]) == {"free"} and df["unit"].nunique() == 2  # 2 radii x 1 repeat
    args = ["subspace-train", *TINY, *COMMANDS["subspace-train"][0], "--no-full"]
    assert main([*args, "--out", str(tmp_path / "s"), "--kinds", "hyperplane,hyperplane"]) == 0
    df = pd.read_csv(tmp_path / "s" / "subspace_train.csv")
    assert len(df) == df["unit"].nunique() == 3 * 2  # 3 radii x 2 dims, each once


def test_config_json_is_strict_json(tmp_path):
    # NaN / infinities (e.g. an intrinsic dimension never reached) become null, not NaN
    from goldisk.cli._common import write_json

    path = tmp_path / "c.json"
    write_json(path, {"a": float("nan"), "b": [1.5, float("inf"), np.float64("nan")],
                      "c": {"d": np.float32(2.0), "e": -float("inf")}, "f": "x"})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    assert data == {"a": None, "b": [1.5, None, None], "c": {"d": 2.0, "e": None}, "f": "x"}


@pytest.mark.parametrize("command", ["sweep", "subspace-train", "select", "trajectory",
                                     "decompose", "reproduce"])
def test_help_states_every_default(command):
    from goldisk.cli import _subparser, build_parser

    sub = _subparser(build_parser(), command)
    for action in sub._actions:
        if action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            continue
        rendered = sub._get_formatter()._expand_help(action)  # what --help prints
        assert str(action.default) in rendered, (action.option_strings, rendered)


def test_help_loads_no_heavy_module():
    # `goldisk --help` and the option checks answer at once: the package and the parser
    # import nothing of torch, scikit-learn, pandas or numpy (PEP 562 lazy names)
    import subprocess
    import sys

    code = ("import sys; from goldisk.cli import build_parser; build_parser(); "
            "import goldisk; goldisk.__version__; "
            "print(sorted(m for m in ('torch', 'sklearn', 'pandas', 'numpy', 'skorch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    import goldisk

    assert goldisk.radius is goldisk._radius.radius and "subspace_hessian" in dir(goldisk)
    assert goldisk.models.MLP is not None  # submodules load on access too
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        goldisk.nope  # noqa: B018


def test_data_root_checks_and_an_unexpected_failure_leaves_no_folder(tmp_path, monkeypatch,
                                                                     capsys):
    base = ["sweep", "--dataset", "mnist", "--no-progress", "--radii", "1", "--dims", "2"]
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    assert main([*base, "--data-root", str(a_file), "--out", str(tmp_path / "o1")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main([*base, "--data-root", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "o2")]) == 2
    assert "add --download to create it" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()

    import goldisk.sweep

    def broken(*args, **kwargs):  # a bug deep inside: the traceback, and no empty --out
        raise RuntimeError("boom")

    monkeypatch.setattr(goldisk.sweep, "radius_sweep", broken)
    out = tmp_path / "o3"
    with pytest.raises(RuntimeError, match="boom"):
        main(["sweep", *TINY, "--radii", "1", "--dims", "2", "--out", str(out)])
    assert not out.exists()


def test_resume_ignores_the_download_flag(tmp_path):
    from goldisk.cli._common import changed_settings

    old = {"dims": "2", "download": False, "data_root": "/d"}
    assert changed_settings(old, dict(old, download=True)) == []
    assert changed_settings(old, dict(old, data_root="/e")) == ["data_root"]


@pytest.mark.parametrize("given, key", [("FashionMNIST", "fashion-mnist"), ("CIFAR-10", "cifar10"),
                                        ("fashion_mnist", "fashion-mnist"), ("MNIST", "mnist")])
def test_dataset_aliases_as_the_library_takes_them(tmp_path, capsys, given, key):
    from goldisk.datasets import load_dataset

    assert main(["sweep", "--dataset", given, "--out", str(tmp_path / "o")]) == 2
    assert f"--dataset {key} needs --data-root" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"root is required to load '{key}'"):
        load_dataset(given)
