"""The accuracy benchmark end to end on a tiny synthetic dataset and a tiny random refiner."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main
from pipeline.core.spec import RefinerSpec


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
    assert report["policy"] == "blend"  # the refiner predicts IoU, so blending is its default
    assert report["refined"] == report["refined_blend"]
    assert set(report["refined_replace"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert sum(report["status_counts"]["replace"].values()) == sum(report["status_counts"]["gate"].values()) > 0


def test_policy_flag_chooses_the_headline_result(dataset_and_refiner, tmp_path):
    report = run_accuracy(dataset_and_refiner, tmp_path, "--jitter", "0.2", "--seed", "3", "--policy", "replace")
    assert report["refined"] == report["refined_replace"]
    assert report["baseline"]["AP"] < 1.0


def test_refiner_options_reach_the_frame_refiner(dataset_and_refiner, tmp_path):
    report = run_accuracy(dataset_and_refiner, tmp_path, "--jitter", "0.1", "--flip-tta", "--iterations", "2", "--min-size", "10000",
                          "--max-refine", "3")
    assert report["options"] == {"flip_tta": True, "iterations": 2, "min_size": 10000.0, "profile": None,
                                 "detector_profile": "generic", "max_refine": 3}
    assert report["profile"] == "generic" and report["share_sent_to_network"]["replace"] is None  # no box to send
    # Every box is below --min-size, so nothing is refined and every policy scores the input boxes.
    assert set(report["status_counts"]["replace"]) == {"small"}
    assert report["refined_replace"] == report["baseline"]


def test_per_class_rows_cover_every_class_with_ground_truth(dataset_and_refiner, tmp_path):
    annotations, _ = dataset_and_refiner
    document = json.loads(annotations.read_text())
    report = run_accuracy(dataset_and_refiner, tmp_path, "--jitter", "0", "--per-class")
    rows = report["per_class"]
    assert sum(row["boxes"] for row in rows) == sum(1 for a in document["annotations"] if not a.get("iscrowd"))
    assert all(row["baseline"] == pytest.approx(1.0) for row in rows)  # ground truth as detections
    assert "AP % per class" in (tmp_path / "accuracy.md").read_text()


def test_repeat_cache_runs_a_repeated_call_once():
    import numpy as np

    from benchmarks.accuracy import RepeatCache
    from pipeline.backends.base import RefinerBackend

    class Counting(RefinerBackend):
        calls = 0

        def _run(self, crops, vectors):
            Counting.calls += 1
            return np.full((len(crops), self.spec.output_size), float(crops.mean()), np.float32)

    spec = RefinerSpec(backbone="x", input_size=32, class_names=("a",))
    cache = RepeatCache(Counting(spec, max_batch=4))
    crops, vectors = np.ones((2, 32, 32, 3), np.uint8), np.zeros((2, spec.vector_size), np.float32)
    first = cache.refine(crops, vectors)
    first[:] = -1  # callers may write into what they get back
    np.testing.assert_array_equal(cache.refine(crops, vectors), np.ones((2, 6)))
    assert Counting.calls == 1
    cache.refine(crops * 2, vectors)
    assert Counting.calls == 2


def test_train_and_val_splits_partition_the_images():
    from types import SimpleNamespace

    from benchmarks.accuracy import select_images

    ground_truth = SimpleNamespace(imgs={i: {"file_name": f"{i:012d}.jpg"} for i in range(200)})
    train, val = select_images(ground_truth, "train"), select_images(ground_truth, "val")
    assert sorted(train + val) == select_images(ground_truth, "all") and not set(train) & set(val)
    assert 10 < len(val) < 60  # about the 15% the refiners hold out
