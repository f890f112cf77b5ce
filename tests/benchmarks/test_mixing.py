"""The mixing study end to end on a tiny synthetic dataset and a tiny random refiner."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main


def run_mixing(dataset_and_refiner, tmp_path, *extra: str) -> dict:
    annotations, refiner = dataset_and_refiner
    out = tmp_path / "mixing.json"
    main(["mixing", "--annotations", str(annotations), "--images", str(annotations.parent / "images"),
          "--refiner", str(refiner), "--out", str(out), *extra])
    return json.loads(out.read_text())


def test_weight_zero_is_the_input_and_the_oracle_beats_both_ends(dataset_and_refiner, tmp_path):
    report = run_mixing(dataset_and_refiner, tmp_path, "--jitter", "0.15", "--seed", "1", "--weights", "0", "0.5", "1")
    ap = report["ap"]
    assert set(ap) == {"weight_0", "weight_0.5", "weight_1", "blend_t0.02", "blend_t0.05", "blend_t0.1", "blend_t0.2", "oracle"}
    assert ap["oracle"] >= max(ap["weight_0"], ap["weight_1"]) - 1e-9
    assert report["mean_iou"]["input"] < 1.0 and report["boxes"] > 0


def test_exact_input_boxes_score_one_unmixed(dataset_and_refiner, tmp_path):
    report = run_mixing(dataset_and_refiner, tmp_path, "--jitter", "0", "--weights", "0", "1", "--temperatures", "0.05")
    assert report["ap"]["weight_0"] == pytest.approx(1.0)
    assert report["ap"]["oracle"] == pytest.approx(1.0)  # the oracle keeps a perfect input box
    assert report["mean_iou"]["input"] == pytest.approx(1.0)


def test_error_breakdown_sees_exact_boxes_as_exact(dataset_and_refiner, tmp_path):
    report = run_mixing(dataset_and_refiner, tmp_path, "--jitter", "0", "--weights", "0", "1", "--temperatures", "0.05")
    errors = report["errors"]
    assert errors["side_error_input"] == [0.0, 0.0, 0.0, 0.0]
    assert errors["truth_outside_window_share"] == 0.0 and errors["iou_outside_window"]["input"] is None
    assert errors["iou_inside_window"]["input"] == pytest.approx(1.0)


def test_error_breakdown_counts_truth_outside_the_window(dataset_and_refiner, tmp_path):
    """At sigma 0.25 many detections are shrunk by more than the padding, so the truth leaves their window."""
    report = run_mixing(dataset_and_refiner, tmp_path, "--jitter", "0.25", "--seed", "2", "--weights", "0", "1", "--temperatures", "0.05")
    errors = report["errors"]
    assert 0.0 < errors["truth_outside_window_share"] < 1.0
    assert min(errors["side_error_input"]) > 0.05
    assert errors["iou_outside_window"]["input"] < errors["iou_inside_window"]["input"]
