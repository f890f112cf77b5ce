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
from pipeline.model.defaults import DEMO_VIDEO, default_detector, default_refiner

REPO = Path(__file__).resolve().parents[3]


def test_exactly_one_person_refiner_is_the_default(tmp_path):
    assert default_refiner().name.startswith("refiner-person-") and default_refiner().suffix == ".safetensors"
    with pytest.raises(DefaultModelError, match="found none"):
        default_refiner(tmp_path)
    for name in ("refiner-person-a.safetensors", "refiner-person-b.safetensors"):
        (tmp_path / name).touch()
    with pytest.raises(DefaultModelError, match="found 2"):
        default_refiner(tmp_path)


def test_default_detector_is_the_pt_then_the_onnx(tmp_path):
    assert default_detector().name == "yolov8n-coco.pt"
    with pytest.raises(DefaultModelError, match="pass --detector"):
        default_detector(tmp_path)
    (tmp_path / "yolov8n-coco-int8.onnx").touch()
    assert default_detector(tmp_path).name == "yolov8n-coco-int8.onnx"
    (tmp_path / "yolov8n-coco.pt").touch()
    assert default_detector(tmp_path).name == "yolov8n-coco.pt"


def cut_clip(path: Path, start: int, count: int) -> Path:
    capture = cv2.VideoCapture(str(DEMO_VIDEO))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    writer = None
    for _ in range(count):
        ok, image = capture.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, image.shape[1::-1])
        writer.write(image)
    writer.release()
    capture.release()
    return path


@pytest.mark.slow
def test_the_users_command_runs_with_no_other_flag(tmp_path):
    clip = cut_clip(tmp_path / "camera.mp4", 250, 5)  # a person and a skateboard the refiner does not know
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
    assert summary["objects"]["refined"] >= 5 and summary["objects"].get("unmapped", 0) >= 1
    assert Path(summary["refiner"]["path"]) == default_refiner()
    assert "FPS" in done.stderr and "refined boxes moved" in done.stderr
