"""The calibration benchmark end to end on a tiny synthetic dataset and a tiny random refiner."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.__main__ import main
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import read_spec
from pipeline.model.checkpoint import save_refiner
from pipeline.model.random_init import random_refiner


def calibrate(dataset_and_refiner, tmp_path, refiner=None, *extra: str, boxes: tuple[str, ...] = ("--jitter", "0.1"),
              margins: tuple[str, ...] = ("--margins", "0", "1")) -> dict:
    annotations, onnx_refiner = dataset_and_refiner
    out = tmp_path / "calibrate.json"
    main(["calibrate", "--annotations", str(annotations), "--images", str(annotations.parent / "images"),
          "--refiner", str(refiner or onnx_refiner), *boxes, "--temperatures", "0.05",
          *margins, "--max-box-sides", "30", "inf", "--out", str(out), *extra])
    return json.loads(out.read_text())


def test_grid_covers_every_setting_and_reliability_bins_every_box(dataset_and_refiner, tmp_path):
    report = calibrate(dataset_and_refiner, tmp_path)
    assert len(report["grid"]) == 4  # 1 temperature x 2 margins x 2 box sides x 1 power
    # Jittered GT (the generic profile) is judged beside GT jittered by the precise sigma too.
    assert report["inputs"] == ["GT jittered, sigma 0.1, seed 0", "GT jittered, sigma 0.05, seed 0"]
    assert {row["max_box_side"] for row in report["grid"]} == {30.0, math.inf}
    for table in ("gain", "input_iou", "box_side"):
        assert sum(row["boxes"] for row in report["reliability"][table]) == report["boxes"] > 0
    assert "by the longer side" in (tmp_path / "calibrate.md").read_text()


def test_write_needs_the_training_split(dataset_and_refiner, tmp_path):
    with pytest.raises(SystemExit, match="--split train"):
        calibrate(dataset_and_refiner, tmp_path, None, "--write", "--split", "val")


def test_write_stores_the_best_setting_in_the_model_file(dataset_and_refiner, tmp_path):
    annotations, _ = dataset_and_refiner
    names = tuple(c["name"] for c in sorted(json.loads(annotations.read_text())["categories"], key=lambda c: c["id"]))
    spec = RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=names)
    model_file = save_refiner(random_refiner(spec), tmp_path / "tiny.safetensors")
    report = calibrate(dataset_and_refiner, tmp_path, model_file, "--write", "--split", "train")
    stored = read_spec(model_file).profiles["generic"]
    best = report["best"]
    assert (stored.blend_temperature, stored.gain_margin, stored.max_box_side) == (
        best["blend_temperature"], best["gain_margin"], best["max_box_side"])
    assert "train split" in stored.fitted_on
    assert stored.gate is not None and stored.gate.threshold == report["gate_chosen"]["threshold"]
    shares = [row["share_refined"] for row in report["gate_curve"]]
    assert shares[0] == 1.0 and shares[-1] == 0.0 and shares == sorted(shares, reverse=True)
    # A second profile lands beside the first, which stays.
    calibrate(dataset_and_refiner, tmp_path, model_file, "--write", "--split", "train", "--profile", "yolov8n")
    assert set(read_spec(model_file).profiles) == {"generic", "yolov8n"}


def test_a_detectors_boxes_are_judged_beside_a_precise_detectors(dataset_and_refiner, tmp_path):
    """With --detections, each setting is also scored on GT jittered by --precise-jitter; the mean gain chooses."""
    annotations, _ = dataset_and_refiner
    truth = json.loads(annotations.read_text())["annotations"]
    detections = tmp_path / "detections.json"
    detections.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"],
                                       "bbox": [v + 2 for v in a["bbox"][:2]] + a["bbox"][2:], "score": 0.9} for a in truth]))
    report = calibrate(dataset_and_refiner, tmp_path, None, boxes=("--detections", str(detections)))
    assert report["inputs"] == [f"detections {detections}", "GT jittered, sigma 0.05, seed 0"]
    for row in report["grid"]:
        gains = [row["ap_by_input"][name] - report["baselines"][name] for name in report["inputs"]]
        assert row["mean_gain"] == pytest.approx(sum(gains) / 2)
    assert report["best"]["mean_gain"] == max(row["mean_gain"] for row in report["grid"])


def test_a_refiner_that_cannot_help_is_told_so_and_written_to_leave_boxes_alone(dataset_and_refiner, tmp_path, capsys):
    """Exact boxes cannot be improved: with no margin-1 setting on the grid, leaving them alone still wins."""
    annotations, _ = dataset_and_refiner
    exact = tmp_path / "exact.json"
    exact.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
                                 for a in json.loads(annotations.read_text())["annotations"]]))
    names = tuple(c["name"] for c in sorted(json.loads(annotations.read_text())["categories"], key=lambda c: c["id"]))
    model_file = save_refiner(random_refiner(RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=names)),
                              tmp_path / "tiny.safetensors")
    report = calibrate(dataset_and_refiner, tmp_path, model_file, "--write", "--split", "train", "--precise-jitter", "0",
                       boxes=("--detections", str(exact)), margins=("--margins", "0"))
    assert all(row["mean_gain"] < 0 for row in report["grid"] if row["gain_margin"] == 0)
    assert report["refining_pays"] is False and report["best"]["gain_margin"] == math.inf
    stored = read_spec(model_file).profiles["generic"]
    assert stored.gain_margin == math.inf and stored.gate.threshold == math.inf  # and no box is even cropped
    assert "refining does not pay on these boxes" in capsys.readouterr().err
