"""The bundled demos end to end: the real clip (default models, contact sheet) and the synthetic clip scored against GT."""

from __future__ import annotations

import json

import cv2
import pytest

from pipeline.app import demo
from pipeline.app.cli import main
from pipeline.app.demo import CONTACT_SHEET_FILE

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_real_demo_refines_people_and_draws_a_contact_sheet(tmp_path, capsys):
    # The first person walks in at about frame 75; 110 frames keep the test short.
    assert main(["--source", "demo", "--max-frames", "110", "--output", str(tmp_path / "demo")]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["frames"]["processed"] == 110
    objects = summary["objects"]
    # YOLOv8n gets its own profile, whose gate does not crop the clip's large people (they lose AP when refined).
    assert summary["refiner"]["profile"] == "yolov8n" and objects["skipped_gain"] > 10
    assert objects["refined"] >= 1 and summary["refinement_change"]["changed"] == objects["refined"]
    assert summary["detector"]["description"].endswith("yolov8n-coco.pt")
    sheet = cv2.imread(str(tmp_path / "demo" / CONTACT_SHEET_FILE))
    assert sheet is not None and sheet.shape[0] > 300 and sheet.shape[1] > 600
    out = capsys.readouterr().out
    assert "FPS" in out and "detect" in out and "refined boxes moved" in out and CONTACT_SHEET_FILE in out


def test_synthetic_demo_runs_and_the_committed_refiner_lifts_the_committed_detectors_ap(tmp_path, capsys):
    assert main(["--source", "synthetic", "--max-frames", "30", "--output", str(tmp_path / "demo")]) == 0
    scores = json.loads((tmp_path / "demo" / "demo-scores.json").read_text())
    assert set(scores) == {"detector", "refined"}
    # Measured on the 90-frame demo: AP 0.097 -> 0.158. A refiner that stopped helping fails here.
    assert scores["refined"]["AP"] > scores["detector"]["AP"] + 0.02, scores
    summary = json.loads((tmp_path / "demo" / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["refiner"]["policy"] == "blend"
    out = capsys.readouterr().out
    assert "refinement changes AP by +" in out and f"outputs in {tmp_path / 'demo'}/:" in out and "demo-scores.json" in out


def test_an_installed_package_says_the_demos_need_a_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_VIDEO", tmp_path / "missing.mp4")
    monkeypatch.setattr(demo, "in_checkout", lambda: False)
    assert main(["--source", "demo", "--output", str(tmp_path / "out")]) == 2
    assert "the demos run from a checkout of the repository" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
