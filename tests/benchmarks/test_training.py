"""The equal-time comparison of training runs: only epochs inside the budget count."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main


def write_log(path, epochs):
    path.write_text("".join(json.dumps(e) + "\n" for e in epochs))
    return path


def epoch(number, minutes, refined):
    return {"epoch": number, "minutes": minutes, "val_iou_input": 0.7, "val_iou_refined": refined,
            "val_iou_gated": refined, "score": refined}


def test_runs_are_compared_at_the_shortest_runs_length(tmp_path):
    fast = write_log(tmp_path / "fast.jsonl", [epoch(0, 1, 0.71), epoch(1, 2, 0.73), epoch(2, 3, 0.75)])
    slow = write_log(tmp_path / "slow.jsonl", [epoch(0, 2.5, 0.74)])
    out = tmp_path / "report.json"
    main(["training", "--logs", str(fast), str(slow), "--labels", "fast", "slow", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["budget_minutes"] == 2.5
    by_run = {row["run"]: row for row in report["results"]}
    # The fast run's third epoch ended after 2.5 minutes: it does not count.
    assert by_run["fast"]["val_iou_refined"] == 0.73 and by_run["fast"]["epochs_in_budget"] == 2
    assert by_run["slow"]["val_iou_refined"] == 0.74
    assert out.with_suffix(".png").stat().st_size > 0 and "| slow |" in out.with_suffix(".md").read_text()


def test_a_file_that_is_not_a_training_log_is_refused(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"something": 1}\n')
    with pytest.raises(SystemExit, match="not a `python -m train` log"):
        main(["training", "--logs", str(bad)])
