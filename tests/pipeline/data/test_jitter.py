"""The jitter generator: seeded, relative to box size, never producing a non-box, never from crowds."""

from __future__ import annotations

import numpy as np
from pycocotools.coco import COCO

from pipeline.data.jitter import jitter_boxes, jittered_detections

FRAME = (4000, 4000)


def test_same_seed_same_boxes_other_seed_other_boxes():
    boxes = np.array([[100.0, 100.0, 200.0, 300.0]] * 5)
    first = jitter_boxes(boxes, 0.1, np.random.default_rng(7), FRAME)
    again = jitter_boxes(boxes, 0.1, np.random.default_rng(7), FRAME)
    other = jitter_boxes(boxes, 0.1, np.random.default_rng(8), FRAME)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_displacement_scales_with_box_width_and_height():
    count = 4000
    small = np.tile([1000.0, 1000.0, 1010.0, 1040.0], (count, 1))  # 10 wide, 40 high
    large = np.tile([1000.0, 1000.0, 1100.0, 1400.0], (count, 1))  # 100 wide, 400 high
    sigma = 0.1
    for boxes, (width, height) in ((small, (10, 40)), (large, (100, 400))):
        moved = jitter_boxes(boxes, sigma, np.random.default_rng(0), FRAME) - boxes
        np.testing.assert_allclose(moved[:, [0, 2]].std(), sigma * width, rtol=0.05)
        np.testing.assert_allclose(moved[:, [1, 3]].std(), sigma * height, rtol=0.05)


def test_large_sigma_keeps_ordered_boxes_inside_the_frame():
    boxes = np.tile([0.0, 0.0, 20.0, 20.0], (500, 1))
    jittered = jitter_boxes(boxes, 1.0, np.random.default_rng(1), (30, 30))
    assert (jittered[:, 2:] - jittered[:, :2] >= 1.0).all()
    assert (jittered[:, :2] >= 0).all() and (jittered[:, 2:] <= 31).all()


def test_crowd_regions_are_not_turned_into_detections():
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 40], "area": 800, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 10, 40, 40], "area": 1600, "iscrowd": 1},
        ],
    }
    ground_truth.createIndex()
    boxes, scores, categories = jittered_detections(ground_truth, [1], 0.05, seed=0)[1]
    assert len(boxes) == 1 and boxes[0, 0] < 40  # only the non-crowd person
    assert 0 <= scores[0] <= 1 and categories.tolist() == [1]
