"""COCO box AP with pycocotools, quiet and restricted to the evaluated images.

pycocotools treats ground truth with iscrowd=1 as ignore regions: detections matched to them
count neither as true nor as false positives, which is how MOTChallenge's ignore boxes and
COCO's crowds are meant to be scored.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def load_ground_truth(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def coco_results(image_id: int, boxes_xyxy: np.ndarray, scores: np.ndarray, category_ids: np.ndarray) -> list[dict]:
    """One image's boxes as COCO results entries ([x, y, w, h] bboxes)."""
    return [
        {"image_id": int(image_id), "category_id": int(category), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
        for (x1, y1, x2, y2), score, category in zip(
            np.asarray(boxes_xyxy, dtype=float).tolist(), scores, category_ids, strict=True
        )
    ]


def evaluate_boxes(ground_truth: COCO, results: list[dict], image_ids: list[int]) -> dict[str, float | None]:
    """AP, AP50, AP75, APs, APm, APl as fractions; None where no ground truth falls in that size range."""
    if not results:
        return dict.fromkeys(METRICS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        detections = ground_truth.loadRes([dict(result) for result in results])  # loadRes writes ids into its input
        evaluation = COCOeval(ground_truth, detections, "bbox")
        evaluation.params.imgIds = sorted(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: None if value < 0 else round(float(value), 4) for name, value in zip(METRICS, evaluation.stats[:6])}
