"""COCO-format boxes with their images held in RAM, split into train and validation by name hash.

Holding decoded images in memory lets every epoch draw fresh random crops for almost free; a
hash of the file name (not a random draw) decides the split, so it never changes between runs
and an image shared by two data sets (coco-tiny and coco-person share val2017 images) falls on
the same side in both.

A real detector's boxes (a COCO results file, train/detector_boxes.py) can ride along: each is
matched to the ground truth it overlaps most, so training can show the refiner real errors and
real false positives next to jittered ground truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from pipeline.core.errors import BBRefinementError
from pipeline.core.geometry import xywh_to_xyxy
from pipeline.data.split import is_validation


class DatasetError(BBRefinementError, ValueError):
    """The annotations or images cannot be used for training."""


@dataclass(frozen=True)
class AnnotatedImage:
    """One image with the ground-truth boxes (xyxy, float64) a refiner may learn from."""

    image_id: int
    file_name: str
    pixels: np.ndarray
    boxes: np.ndarray
    class_ids: np.ndarray
    detected: np.ndarray | None = None  # (M, 4) a real detector's boxes (xyxy) of the refiner's classes
    detected_match: np.ndarray | None = None  # (M,) index into `boxes` of the best-overlapping truth, -1 if none
    detected_iou: np.ndarray | None = None  # (M,) IoU with that truth (0 where none)


def load_coco(annotations: Path) -> dict:
    try:
        data = json.loads(Path(annotations).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"cannot read COCO annotations {annotations} ({error})") from error
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(f"{annotations} is not COCO format: no '{key}' list")
    return data


def category_names(coco: dict) -> tuple[tuple[str, ...], dict[int, int]]:
    """Class names in category-id order and a map from COCO category id to class index."""
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    return tuple(c["name"] for c in categories), {c["id"]: i for i, c in enumerate(categories)}


# A detection mostly inside a crowd region is neither a true nor a false positive for COCO: drop it.
CROWD_COVER = 0.5


def match_detections(detected: np.ndarray, truth: np.ndarray, crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept detections, index of the best-overlapping truth or -1, that IoU) for one image."""
    if len(crowd):
        inside = np.clip(np.minimum(detected[:, None, 2:], crowd[None, :, 2:]) - np.maximum(detected[:, None, :2], crowd[None, :, :2]), 0, None).prod(axis=2)
        area = np.clip(detected[:, 2:] - detected[:, :2], 1e-9, None).prod(axis=1)
        detected = detected[(inside / area[:, None]).max(axis=1) < CROWD_COVER]
    if not len(truth) or not len(detected):
        return detected, np.full(len(detected), -1), np.zeros(len(detected))
    iou = box_iou(torch.from_numpy(detected), torch.from_numpy(truth)).numpy()
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(len(detected)), best]
    return detected, np.where(best_iou > 0, best, -1), best_iou


def read_detections(path: Path, class_ids: set[int]) -> dict[int, np.ndarray]:
    """A COCO results file as xyxy boxes per image id, only the given category ids."""
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"cannot read detector boxes {path} ({error}); make them with python -m train.detector_boxes") from error
    per_image: dict[int, list] = {}
    for entry in entries:
        if entry["category_id"] in class_ids:
            per_image.setdefault(entry["image_id"], []).append(entry["bbox"])
    return {image_id: xywh_to_xyxy(boxes) for image_id, boxes in per_image.items()}


def load_images(
    annotations: Path,
    images_dir: Path,
    split: str = "all",
    val_fraction: float = 0.15,
    min_size: float = 4.0,
    limit: int | None = None,
    classes: tuple[str, ...] | None = None,
    detections: Path | None = None,
) -> tuple[list[AnnotatedImage], tuple[str, ...]]:
    """Read images and usable boxes (not crowd, both sides >= min_size) for one split.

    split is "train", "val" or "all". Images without a usable box are skipped. `classes` keeps
    only those categories (by name, in that order), so data sets with more classes can train a
    refiner of fewer. `detections`: a COCO results file of a real detector on these images.
    """
    coco = load_coco(annotations)
    class_names, class_index = category_names(coco)
    if classes is not None:
        missing = [name for name in classes if name not in class_names]
        if missing:
            raise DatasetError(f"{annotations} has no class {', '.join(missing)}; it has {', '.join(class_names)}")
        by_name = {c["name"]: c["id"] for c in coco["categories"]}
        class_index = {by_name[name]: i for i, name in enumerate(classes)}
        class_names = tuple(classes)
    per_image: dict[int, list[dict]] = {}
    crowds: dict[int, list] = {}
    for annotation in coco["annotations"]:
        if annotation["category_id"] not in class_index:
            continue
        _, _, w, h = annotation["bbox"]
        if annotation.get("iscrowd", 0) or annotation.get("ignore", 0):
            crowds.setdefault(annotation["image_id"], []).append(annotation["bbox"])
            continue
        if w < min_size or h < min_size:
            continue
        per_image.setdefault(annotation["image_id"], []).append(annotation)
    detected = read_detections(detections, set(class_index)) if detections is not None else None
    images = []
    for info in sorted(coco["images"], key=lambda i: i["file_name"]):
        if info["id"] not in per_image:
            continue
        if split != "all" and is_validation(info["file_name"], val_fraction) != (split == "val"):
            continue
        pixels = cv2.imread(str(Path(images_dir) / info["file_name"]), cv2.IMREAD_COLOR)
        if pixels is None:
            raise DatasetError(f"cannot read image {Path(images_dir) / info['file_name']}")
        boxes = xywh_to_xyxy([a["bbox"] for a in per_image[info["id"]]])
        class_ids = np.array([class_index[a["category_id"]] for a in per_image[info["id"]]], dtype=np.int64)
        found = {}
        if detected is not None:
            found = dict(zip(("detected", "detected_match", "detected_iou"), match_detections(
                detected.get(info["id"], np.zeros((0, 4))), boxes, xywh_to_xyxy(crowds.get(info["id"], [])))))
        images.append(AnnotatedImage(info["id"], info["file_name"], pixels, boxes, class_ids, **found))
        if limit is not None and len(images) >= limit:
            break
    if not images:
        raise DatasetError(f"no usable boxes in {annotations} for split {split!r}")
    return images, class_names
