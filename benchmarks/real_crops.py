"""Real refiner inputs: crops of people in COCO training photos, cut exactly as the pipeline cuts them.

Why real crops: reduced precisions (BF16, INT8) err by what real activations look like, and random
pixels produce other activations; parity tests and the latency benchmark use these. Boxes are the
annotations' (or any COCO results file's, e.g. a detector's), on training images only: the
held-out split is kept for accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from benchmarks.accuracy import VALIDATION_FRACTION
from pipeline.core.errors import UsageError
from pipeline.core.geometry import crop_windows, mixture_vectors, usable_boxes
from pipeline.core.spec import RefinerSpec
from pipeline.refine.crops import CpuCropper
from train.data import is_validation

MIN_SIDE = 16  # px: boxes a run would refine, not specks


def real_crops(
    spec: RefinerSpec, count: int, coco_dir: Path, *, boxes_file: Path | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`count` uint8 crops at spec.input_size and their mixture vectors (class 0), from `coco_dir`'s training images.

    `coco_dir` holds annotations/instances_person.json and images/; `boxes_file` (COCO results
    JSON) replaces the annotations' boxes with, e.g., a detector's.
    """
    annotations = Path(coco_dir) / "annotations" / "instances_person.json"
    if not annotations.is_file():
        raise UsageError(f"real crops need {annotations}; pass the folder of a COCO person set")
    document = json.loads(annotations.read_text())
    files = {image["id"]: image["file_name"] for image in document["images"]}
    found = json.loads(Path(boxes_file).read_text()) if boxes_file else document["annotations"]
    found = [
        box for box in found
        if box["image_id"] in files and not box.get("iscrowd") and min(box["bbox"][2:]) >= MIN_SIDE
        and not is_validation(files[box["image_id"]], VALIDATION_FRACTION)
    ]
    if len(found) < count:
        raise UsageError(f"only {len(found)} usable boxes in {boxes_file or annotations}; ask for at most that many crops")
    chosen = [found[index] for index in np.random.default_rng(seed).permutation(len(found))[:count]]
    crops, vectors = [], []
    cropper = CpuCropper(spec.input_size)
    try:
        for box in chosen:
            image = cv2.imread(str(Path(coco_dir) / "images" / files[box["image_id"]]))
            x, y, width, height = box["bbox"]
            boxes = np.array([[x, y, x + width, y + height]], dtype=np.float64)
            if not usable_boxes(boxes, image.shape[1], image.shape[0]).all():
                raise UsageError(f"box {box['bbox']} of image {box['image_id']} cannot be cropped; check {coco_dir}")
            windows = crop_windows(boxes, spec.padding)
            crops.append(cropper.crop(image, windows).copy())  # the cropper reuses its buffers
            vectors.append(mixture_vectors(np.zeros(1), boxes, windows, spec.num_classes))
    finally:
        cropper.close()
    return np.concatenate(crops), np.concatenate(vectors).astype(np.float32)
