"""The inputs every app test runs on: tiny clips, saved detections and tiny refiners, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.app.test_cli import tiny_refiner, write_clip, write_coco_results, write_mot_detections


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """"clip", "a", "b": 12-frame clips; "short": 4 frames; MOT and COCO detections; refiners (person + disc, disc only, no IoU head)."""
    folder = tmp_path_factory.mktemp("inputs")
    return {
        "clip": write_clip(folder / "clip.mp4", 12),
        "a": write_clip(folder / "a.mp4", 12),
        "b": write_clip(folder / "b.mp4", 12),
        "short": write_clip(folder / "short.mp4", 4),
        "detections": write_mot_detections(folder / "det.txt", 12),
        "coco_results": write_coco_results(folder / "results.json"),
        "refiner": tiny_refiner(folder / "refiner.safetensors"),
        "disc_refiner": tiny_refiner(folder / "disc.safetensors", ("disc",)),
        "plain_refiner": tiny_refiner(folder / "plain.safetensors", predicts_iou=False),
    }
