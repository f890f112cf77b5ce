"""The ablation table: one row per accuracy report, options spelled out, changes against the baseline."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main


def accuracy_report(path, ap_baseline, ap_replace, ap_gate=None, **options):
    scores = lambda ap: {key: ap for key in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
    report = {"input": "GT jittered, sigma 0.1, seed 0", "images": 5, "baseline": scores(ap_baseline),
              "refined": scores(ap_replace), "refined_replace": scores(ap_replace),
              "options": {"flip_tta": False, "iterations": 1, "min_size": 0.0, **options}}
    if ap_gate is not None:
        report["refined_gate"] = scores(ap_gate)
    path.write_text(json.dumps(report))
    return path


def test_summary_rows_follow_the_reports(tmp_path):
    plain = accuracy_report(tmp_path / "plain.json", 0.40, 0.45, 0.43)
    tta = accuracy_report(tmp_path / "tta.json", 0.40, 0.47, flip_tta=True, iterations=2)
    out = tmp_path / "summary.json"
    main(["summary", "--reports", str(plain), str(tta), "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert [r["replace"] for r in rows] == [0.45, 0.47] and rows[1]["gate"] is None
    markdown = out.with_suffix(".md").read_text()
    assert "| none | 40.0 | 45.0 (+5.0) | 43.0 (+3.0) | n/a |" in markdown
    assert "flip TTA, 2 iterations" in markdown


def test_a_file_that_is_not_an_accuracy_report_is_refused(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(SystemExit, match="not a `python -m benchmarks accuracy` report"):
        main(["summary", "--reports", str(tmp_path / "x.json")])
