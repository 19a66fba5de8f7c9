"""`goldisk sweep` (goldisk/cli/_sweep.py): kill a real process with SIGKILL mid-run, resume
it, and get exactly the rows of an uninterrupted run (none missing, none twice); a resume
keeps the total time of every leg in config.json."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from goldisk.cli import main

ARGS = ["sweep", "--radii", "0.1,0.3,1,3,10", "--dims", "2,4", "--n-subspaces", "2",
        "--hessian-samples", "100", "--hidden", "16", "--no-progress"]
KEYS = ["subspace", "radius_index", "dim"]


def _cmd(out, *extra):
    return [sys.executable, "-m", "goldisk", *ARGS, "--out", str(out), *extra]


def _rows(path):
    if not path.exists():
        return 0
    return max(0, path.read_text().count("\n") - 1)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    kill_after_rows = 7  # mid-way, and mid-unit when a write was torn
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    assert main([*ARGS, "--out", str(ref_dir)]) == 0
    reference = pd.read_csv(ref_dir / "sweep.csv").sort_values(KEYS, ignore_index=True)
    assert len(reference) == 5 * 2 * 2

    proc = subprocess.Popen(_cmd(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _rows(run_dir / "sweep.csv") < kill_after_rows and time.time() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _rows(run_dir / "sweep.csv")
    assert partial < len(reference), "the run finished before it could be killed"

    assert main([*ARGS, "--out", str(run_dir)]) == 2  # refused without --resume
    assert main([*ARGS, "--out", str(run_dir), "--resume"]) == 0
    resumed = pd.read_csv(run_dir / "sweep.csv").sort_values(KEYS, ignore_index=True)
    assert not resumed.duplicated(KEYS).any()
    pd.testing.assert_frame_equal(resumed, reference, check_exact=False, rtol=1e-12)
    assert (run_dir / "sweep.png").exists()


TINY = ["sweep", "--radii", "0.5,1,2", "--dims", "2", "--n-subspaces", "1",
        "--hessian-samples", "30", "--hidden", "4", "--no-progress"]


def _damage_and_resume(out, damage, full):
    path = out / "sweep.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(damage(lines)))
    assert main([*TINY, "--out", str(out), "--resume"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(path), full, check_exact=True)


def test_c02_resume_recomputes_a_damaged_row_that_kept_its_field_count(tmp_path):
    """Issue 17 case 2: a last row cut inside its last field and then newline-ended (as an
    editor or `echo >>` leaves it) has the header's field count; it was kept, 0.06 off.
    Every row is now checked against its digest: damaged rows are recomputed."""
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out)]) == 0
    full = pd.read_csv(out / "sweep.csv")
    assert len(full) == 3
    # the last row cut inside its last field, then ended with a newline
    _damage_and_resume(out, lambda ls: ls[:-1] + [ls[-1].rstrip("\n")[:-3] + "\n"], full)
    # a value edited in the middle row (same length, same field count)
    def edit(ls):
        fields = ls[2].rstrip("\n").split(",")
        i = next(k for k, f in enumerate(fields) if "." in f and f[-1].isdigit())
        fields[i] = fields[i][:-1] + str((int(fields[i][-1]) + 1) % 10)
        return ls[:2] + [",".join(fields) + "\n"] + ls[3:]
    _damage_and_resume(out, edit, full)
    # a run killed between a row and its digest: the row without one is recomputed
    check = out / "sweep.csv.check"
    check.write_text("".join(check.read_text().splitlines(keepends=True)[:-1]))
    _damage_and_resume(out, lambda ls: ls, full)


CIRCLES = ["--dataset", "circles", "--max-samples", "60", "--hidden", "4", "--no-progress",
        "--radii", "1", "--dims", "2"]


def test_resume_adds_the_legs_seconds(tmp_path):
    out = tmp_path / "s"
    assert main(["sweep", *CIRCLES, "--out", str(out)]) == 0
    first = json.loads((out / "config.json").read_text())
    assert first["seconds_total"] == first["seconds"] > 0
    assert main(["sweep", *CIRCLES, "--out", str(out), "--resume"]) == 0
    second = json.loads((out / "config.json").read_text())
    # "seconds" is the last leg, "seconds_total" all legs together
    assert second["seconds_total"] == first["seconds_total"] + second["seconds"]
