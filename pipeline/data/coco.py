"""COCO AP with pycocotools, quietly, as fractions under flat keys (used by the demo and benchmarks)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def load_ground_truth(annotations: Path | dict) -> COCO:
    """A pycocotools COCO object from a path or an already-parsed document, without its prints."""
    document = json.loads(Path(annotations).read_text()) if not isinstance(annotations, dict) else annotations
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = document
        ground_truth.createIndex()
    return ground_truth


def coco_ap(ground_truth: COCO, results: list[dict], image_ids: list[int] | None = None) -> dict[str, float]:
    """AP, AP50, AP75 and AP by size for COCO results dicts (image_id, category_id, bbox xywh, score).

    No results at all is AP 0, not an error, so a detector that finds nothing is still scored.
    """
    if not results:
        return {key: 0.0 for key in AP_KEYS}
    evaluator = _accumulated(ground_truth, results, image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()
    return {key: float(max(value, 0.0)) for key, value in zip(AP_KEYS, np.asarray(evaluator.stats[:6]))}


def coco_ap_by_class(ground_truth: COCO, results: list[dict], image_ids: list[int]) -> dict[str, dict[str, float | int]]:
    """Per class with ground truth on these images: its AP (IoU 0.5:0.95, all sizes, 100 detections)
    and how many (non-crowd) boxes it has, so a reader can weigh a class's AP by its evidence."""
    names = {category["id"]: category["name"] for category in ground_truth.loadCats(ground_truth.getCatIds())}
    boxes = {category: len(ground_truth.getAnnIds(imgIds=image_ids, catIds=[category], iscrowd=False)) for category in names}
    present = [category for category in sorted(names) if boxes[category]]
    if not results:
        return {names[category]: {"AP": 0.0, "boxes": boxes[category]} for category in present}
    precision = _accumulated(ground_truth, results, image_ids, present).eval["precision"][:, :, :, 0, -1]  # IoU x recall x class
    by_class = {}
    for index, category in enumerate(present):
        valid = precision[:, :, index][precision[:, :, index] > -1]
        by_class[names[category]] = {"AP": float(valid.mean()) if valid.size else 0.0, "boxes": boxes[category]}
    return by_class


def _accumulated(ground_truth: COCO, results: list[dict], image_ids: list[int] | None, category_ids: list[int] | None = None) -> COCOeval:
    """pycocotools' box evaluation over these images (and classes), evaluated and accumulated, quietly."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        if category_ids is not None:
            evaluator.params.catIds = category_ids
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator
