"""Detector-like boxes made from ground truth, for measuring refinement at a known error level.

Each side moves by a normal draw of sigma times the box's width (left, right) or height (top,
bottom), so the error is relative to the object's size as a detector's is. Crowd regions are
not objects and are never turned into detections.
"""

from __future__ import annotations

import numpy as np
from pycocotools.coco import COCO

from pipeline.core.geometry import as_boxes

MIN_SIDE = 1.0  # pixels: a jittered box stays a box


def jitter_boxes(boxes_xyxy: np.ndarray, sigma: float, rng: np.random.Generator, frame_size: tuple[int, int]) -> np.ndarray:
    """Move every side by N(0, sigma * side length); keep the box ordered, inside the frame, >= 1 px."""
    boxes = as_boxes(boxes_xyxy)
    sizes = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
    moved = boxes + rng.normal(0.0, sigma, size=boxes.shape) * sizes
    # At large sigma a side can cross its opposite; sorting keeps the pair of edges rather than dropping the object.
    xs, ys = np.sort(moved[:, [0, 2]], axis=1), np.sort(moved[:, [1, 3]], axis=1)
    width, height = frame_size
    x1 = np.clip(xs[:, 0], 0, width - MIN_SIDE)
    y1 = np.clip(ys[:, 0], 0, height - MIN_SIDE)
    x2 = np.maximum(np.clip(xs[:, 1], 0, width), x1 + MIN_SIDE)
    y2 = np.maximum(np.clip(ys[:, 1], 0, height), y1 + MIN_SIDE)
    return np.stack([x1, y1, x2, y2], axis=1)


def jittered_detections(
    ground_truth: COCO, image_ids: list[int], sigma: float, seed: int
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """image id -> (boxes xyxy, scores uniform in 0..1, category ids) from non-crowd ground truth, seeded."""
    rng = np.random.default_rng(seed)
    per_image = {}
    for image_id in sorted(image_ids):
        image = ground_truth.imgs[image_id]
        annotations = [a for a in ground_truth.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        xywh = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        jittered = jitter_boxes(boxes, sigma, rng, (image["width"], image["height"]))
        categories = np.array([a["category_id"] for a in annotations], dtype=np.int64)
        per_image[image_id] = (jittered, rng.uniform(0.0, 1.0, size=len(annotations)), categories)
    return per_image
