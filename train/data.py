"""COCO-format boxes with their images held in RAM, split into train and validation by name hash.

Holding decoded images in memory lets every epoch draw fresh random crops for almost free; a
hash of the file name (not a random draw) decides the split, so it never changes between runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


class DatasetError(ValueError):
    """The annotations or images cannot be used for training."""


@dataclass(frozen=True)
class AnnotatedImage:
    """One image with the ground-truth boxes (xyxy, float64) a refiner may learn from."""

    image_id: int
    file_name: str
    pixels: np.ndarray
    boxes: np.ndarray
    class_ids: np.ndarray


def is_validation(file_name: str, fraction: float) -> bool:
    """Deterministic split: the sha1 of the name, read as a fraction of 2^160, below `fraction`."""
    digest = int(hashlib.sha1(f"bbrefinement-val:{file_name}".encode()).hexdigest(), 16)
    return digest / 2**160 < fraction


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


def load_images(
    annotations: Path,
    images_dir: Path,
    split: str = "all",
    val_fraction: float = 0.15,
    min_size: float = 4.0,
    limit: int | None = None,
) -> tuple[list[AnnotatedImage], tuple[str, ...]]:
    """Read images and usable boxes (not crowd, both sides >= min_size) for one split.

    split is "train", "val" or "all". Images without a usable box are skipped.
    """
    coco = load_coco(annotations)
    class_names, class_index = category_names(coco)
    per_image: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        _, _, w, h = annotation["bbox"]
        if annotation.get("iscrowd", 0) or annotation.get("ignore", 0) or w < min_size or h < min_size:
            continue
        per_image.setdefault(annotation["image_id"], []).append(annotation)
    images = []
    for info in sorted(coco["images"], key=lambda i: i["file_name"]):
        if info["id"] not in per_image:
            continue
        if split != "all" and is_validation(info["file_name"], val_fraction) != (split == "val"):
            continue
        pixels = cv2.imread(str(Path(images_dir) / info["file_name"]), cv2.IMREAD_COLOR)
        if pixels is None:
            raise DatasetError(f"cannot read image {Path(images_dir) / info['file_name']}")
        boxes = np.array([a["bbox"] for a in per_image[info["id"]]], dtype=np.float64)
        boxes[:, 2:] += boxes[:, :2]
        classes = np.array([class_index[a["category_id"]] for a in per_image[info["id"]]], dtype=np.int64)
        images.append(AnnotatedImage(info["id"], info["file_name"], pixels, boxes, classes))
        if limit is not None and len(images) >= limit:
            break
    if not images:
        raise DatasetError(f"no usable boxes in {annotations} for split {split!r}")
    return images, class_names
