"""``goldisk sweep --resume`` keeps the total time of every leg in config.json."""

import json

from goldisk.cli import main

TINY = ["--dataset", "circles", "--max-samples", "60", "--hidden", "4", "--no-progress",
        "--radii", "1", "--dims", "2"]


def test_resume_adds_the_legs_seconds(tmp_path):
    out = tmp_path / "s"
    assert main(["sweep", *TINY, "--out", str(out)]) == 0
    first = json.loads((out / "config.json").read_text())
    assert first["seconds_total"] == first["seconds"] > 0
    assert main(["sweep", *TINY, "--out", str(out), "--resume"]) == 0
    second = json.loads((out / "config.json").read_text())
    # "seconds" is the last leg, "seconds_total" all legs together
    assert second["seconds_total"] == first["seconds_total"] + second["seconds"]
