"""Adapters between `supervision.Detections` and the Refiner (duck-typed: supervision is imported only to copy).

Why a separate module: supervision is optional for the library; only users who pass its
Detections need it, and they have it installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.errors import UsageError


def from_supervision(detections: Any) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Boxes (N, 4) xyxy, one class name per box and scores (or None) of a supervision.Detections."""
    names = detections.data.get("class_name") if detections.data else None
    if names is None:
        raise UsageError(
            "supervision Detections need data['class_name'] (sv.Detections.from_ultralytics sets it) to pick the refiner's class"
        )
    scores = None if detections.confidence is None else np.asarray(detections.confidence, dtype=np.float64)
    return np.asarray(detections.xyxy, dtype=np.float64).reshape(-1, 4), [str(name) for name in names], scores


def to_supervision(detections: Any, result: Any) -> Any:
    """A copy of `detections` with the refined boxes (`result`: RefinedDetections), and per box data["refine_status"]
    and data["predicted_iou"]."""
    import copy

    refined = copy.deepcopy(detections)
    refined.xyxy = np.asarray(result.boxes, dtype=np.float32)
    refined.data["refine_status"] = np.array([str(status) for status in result.status])
    refined.data["predicted_iou"] = np.asarray(result.predicted_iou, dtype=np.float32)  # NaN rows where not predicted
    return refined
