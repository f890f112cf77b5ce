"""COCO AP of benchmark boxes: perfect for ground truth as detections, lower for jittered boxes, crowd regions ignored."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO

from benchmarks.coco_eval import coco_results
from pipeline.data.jitter import jittered_detections
from pipeline.data.coco import coco_ap, coco_ap_by_class, load_ground_truth

PEOPLE = [[10, 10, 60, 150], [200, 40, 80, 200], [400, 300, 120, 160], [600, 100, 50, 90]]
CROWD = [700, 400, 200, 150]


def ground_truth(with_crowd: bool) -> COCO:
    annotations = [
        {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
        for i, box in enumerate(PEOPLE)
    ]
    if with_crowd:
        annotations.append({"id": 99, "image_id": 1, "category_id": 1, "bbox": CROWD, "area": CROWD[2] * CROWD[3], "iscrowd": 1})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": [{"id": 1, "file_name": "a.jpg", "width": 1000, "height": 600}],
            "categories": [{"id": 1, "name": "person"}],
            "annotations": annotations,
        }
        coco.createIndex()
    return coco


def xyxy(boxes: list[list[float]]) -> np.ndarray:
    array = np.array(boxes, dtype=float)
    array[:, 2:] += array[:, :2]
    return array


def results_for(boxes: list[list[float]], scores: list[float]) -> list[dict]:
    return coco_results(1, xyxy(boxes), np.array(scores), np.ones(len(boxes), dtype=int))


def test_ground_truth_as_detections_scores_one():
    scores = coco_ap(ground_truth(False), results_for(PEOPLE, [0.9, 0.8, 0.7, 0.6]), [1])
    assert scores["AP"] == pytest.approx(1.0) and scores["AP50"] == pytest.approx(1.0)


def test_jittered_detections_score_lower():
    gt = ground_truth(False)
    boxes, scores, categories = jittered_detections(gt, [1], 0.15, seed=0)[1]
    jittered = coco_ap(gt, coco_results(1, boxes, scores, categories), [1])
    assert jittered["AP"] < 0.9


def test_detection_on_a_crowd_region_is_ignored_not_a_false_positive():
    # The crowd-region detection has the highest score: counted as a false positive it would cost precision.
    detections = results_for([CROWD, *PEOPLE], [0.99, 0.9, 0.8, 0.7, 0.6])
    assert coco_ap(ground_truth(True), detections, [1])["AP"] == pytest.approx(1.0)
    assert coco_ap(ground_truth(False), detections, [1])["AP"] < 1.0


def test_no_detections_scores_zero():
    assert coco_ap(ground_truth(False), [], [1])["AP"] == 0.0


def test_ap_by_class_scores_each_class_with_ground_truth_and_counts_its_boxes():
    boxes = {1: PEOPLE[:2], 2: PEOPLE[2:]}  # two people, two cars; no bicycle on the image
    gt = load_ground_truth({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 1000, "height": 600}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}, {"id": 3, "name": "bicycle"}],
        "annotations": [{"id": 10 * c + i, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                        for c, group in boxes.items() for i, b in enumerate(group)],
    })
    exact_people = coco_results(1, xyxy(boxes[1]), np.array([0.9, 0.8]), np.array([1, 1]))
    shifted_cars = coco_results(1, xyxy([[x + w / 3, y, w, h] for x, y, w, h in boxes[2]]), np.array([0.9, 0.8]), np.array([2, 2]))
    by_class = coco_ap_by_class(gt, exact_people + shifted_cars, [1])
    assert set(by_class) == {"person", "car"}
    assert by_class["person"] == {"AP": pytest.approx(1.0), "boxes": 2}
    assert 0 < by_class["car"]["AP"] < 1.0 and by_class["car"]["boxes"] == 2
