"""Defaults: the user's command with no other flag runs the committed detector and person refiner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from pipeline.core.errors import DefaultModelError
from pipeline.model import defaults
from pipeline.model.defaults import MODELS_ENV, default_detector, default_refiner, search_dirs

REPO = Path(__file__).resolve().parents[3]


def test_exactly_one_person_refiner_is_the_default(tmp_path):
    assert default_refiner().name.startswith("refiner-person-") and default_refiner().suffix == ".safetensors"
    with pytest.raises(DefaultModelError, match="no default refiner"):
        default_refiner(tmp_path)
    for name in ("refiner-person-a.safetensors", "refiner-person-b.safetensors"):
        (tmp_path / name).touch()
    with pytest.raises(DefaultModelError, match="found 2"):
        default_refiner(tmp_path)


def test_default_detector_is_the_pt_then_the_onnx(tmp_path):
    assert default_detector().name == "yolov8n-coco.pt"
    with pytest.raises(DefaultModelError, match="no default detector") as raised:
        default_detector(tmp_path)
    assert "--" not in str(raised.value), "the Python API's error must not name a CLI flag"
    (tmp_path / "yolov8n-coco-int8.onnx").touch()
    assert default_detector(tmp_path).name == "yolov8n-coco-int8.onnx"
    (tmp_path / "yolov8n-coco.pt").touch()
    assert default_detector(tmp_path).name == "yolov8n-coco.pt"


def test_the_users_folder_comes_first_then_the_installed_copy_then_the_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "BUNDLED_DIR", tmp_path / "bundled")
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert search_dirs("engines") == [tmp_path / "bundled" / "engines", REPO / "engines"]
    assert default_refiner() == next((REPO / "engines").glob(defaults.REFINER_PATTERN))  # the checkout: the fallback
    bundled = tmp_path / "bundled" / "engines"
    bundled.mkdir(parents=True)
    (bundled / "refiner-person-bundled.safetensors").touch()
    assert default_refiner() == bundled / "refiner-person-bundled.safetensors"
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "yolov8n-coco-int8.onnx").touch()
    assert default_detector() == tmp_path / "mine" / "yolov8n-coco-int8.onnx"  # a folder's candidate beats a later folder's
    assert default_refiner() == bundled / "refiner-person-bundled.safetensors"  # the user's folder has none: the next


def test_an_installed_copy_writes_its_caches_outside_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv(defaults.CACHE_ENV, raising=False)
    assert defaults.writable_root() == REPO  # a checkout: its git-ignored engines/cache/ and .yolo/
    monkeypatch.setattr(defaults, "REPO_ROOT", tmp_path / "site-packages")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert defaults.writable_root() == tmp_path / "cache" / "bbrefinement"
    monkeypatch.setenv(defaults.CACHE_ENV, str(tmp_path / "chosen"))
    assert defaults.writable_root() == tmp_path / "chosen"


@pytest.mark.slow
def test_the_users_command_runs_with_no_other_flag(tmp_path, demo_clip):
    clip = demo_clip(tmp_path / "camera.mp4", 250, 5)  # a person and a skateboard the refiner does not know
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "pipeline", "--source", str(clip), "--output", str(tmp_path / "run")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    assert len((run / "detections.jsonl").read_text().splitlines()) == 5
    capture = cv2.VideoCapture(str(run / "annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()
    summary = json.loads((run / "summary.json").read_text())
    # Every person box reaches the refiner's decision (refined, gated, or skipped by the yolov8n profile's gate:
    # these people are taller than its 192 px limit); the skateboard is no class of the person refiner.
    persons = sum(summary["objects"].get(status, 0) for status in ("refined", "gated", "skipped_gain", "skipped_budget"))
    assert persons >= 5 and summary["objects"].get("unmapped", 0) >= 1 and summary["refiner"]["profile"] == "yolov8n"
    assert Path(summary["refiner"]["path"]) == default_refiner()
    assert "FPS" in done.stdout and "boxes: " in done.stdout  # results on stdout, progress on stderr
