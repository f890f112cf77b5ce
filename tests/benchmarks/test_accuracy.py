"""The accuracy benchmark end to end on a tiny synthetic dataset and a tiny random refiner."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main
from build_engine import random_refiner
from pipeline.onnx_export import export_onnx
from pipeline.spec import RefinerSpec
from pipeline.synthetic import write_coco_dataset


@pytest.fixture(scope="module")
def dataset_and_refiner(tmp_path_factory):
    root = tmp_path_factory.mktemp("accuracy")
    annotations = write_coco_dataset(root / "data", n_images=3, width=160, height=120, seed=0)
    names = tuple(c["name"] for c in sorted(json.loads(annotations.read_text())["categories"], key=lambda c: c["id"]))
    spec = RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=names)
    return annotations, export_onnx(random_refiner(spec), root / "tiny.onnx", max_batch=8)


def run_accuracy(dataset_and_refiner, tmp_path, *extra: str) -> dict:
    annotations, refiner = dataset_and_refiner
    out = tmp_path / "accuracy.json"
    images = annotations.parent / "images"
    main(
        [
            "accuracy",
            "--annotations",
            str(annotations),
            "--images",
            str(images),
            "--refiner",
            str(refiner),
            "--out",
            str(out),
            *extra,
        ]
    )
    return json.loads(out.read_text())


def test_ground_truth_boxes_score_one_and_both_policies_are_reported(dataset_and_refiner, tmp_path):
    report = run_accuracy(dataset_and_refiner, tmp_path, "--jitter", "0")
    assert report["baseline"]["AP"] == pytest.approx(1.0)
    assert report["policy"] == "gate"  # the refiner predicts IoU, so gating is its default
    assert report["refined"] == report["refined_gate"]
    assert set(report["refined_replace"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert sum(report["status_counts"]["replace"].values()) == sum(report["status_counts"]["gate"].values()) > 0


def test_policy_flag_chooses_the_headline_result(dataset_and_refiner, tmp_path):
    report = run_accuracy(dataset_and_refiner, tmp_path, "--jitter", "0.2", "--seed", "3", "--policy", "replace")
    assert report["refined"] == report["refined_replace"]
    assert report["baseline"]["AP"] < 1.0
