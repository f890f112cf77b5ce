"""Box arrays -> COCO results entries, the input of pipeline.data.coco.coco_ap.

Scoring itself is pipeline.data.coco's (pycocotools): ground truth with iscrowd=1 is an ignore
region there, so detections on MOTChallenge's ignore boxes and COCO's crowds count neither as true
nor as false positives.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.geometry import xyxy_to_xywh


def coco_results(image_id: int, boxes_xyxy: np.ndarray, scores: np.ndarray, category_ids: np.ndarray) -> list[dict]:
    """One image's boxes as COCO results entries ([x, y, w, h] bboxes)."""
    return [
        {"image_id": int(image_id), "category_id": int(category), "bbox": xyxy_to_xywh(box), "score": float(score)}
        for box, score, category in zip(np.asarray(boxes_xyxy, dtype=float), scores, category_ids, strict=True)
    ]
