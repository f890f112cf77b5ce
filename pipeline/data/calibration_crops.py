"""Crops for INT8 calibration, cut by the pipeline's own geometry from the training images of a COCO set.

Quantisation ranges must come from what the refiner sees at run time: windows around a real
detector's boxes (a COCO results file) and around ground truth jittered like a detector's error,
grown by the refiner's padding, resized by the CPU cropper, with the same mixture vectors. Only
the training side of the split (pipeline.data.split) is read, so held-out scores stay held out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.errors import BBRefinementError
from pipeline.core.geometry import crop_windows, mixture_vectors, usable_boxes
from pipeline.core.spec import RefinerSpec
from pipeline.core.types import Frame
from pipeline.data.coco import load_ground_truth
from pipeline.data.jitter import jittered_detections
from pipeline.data.split import is_validation
from pipeline.io.detection_files import load_coco_results
from pipeline.model.quantize import CalibrationCrops
from pipeline.refine.class_mapping import ClassMapping
from pipeline.refine.crops import CpuCropper

DEFAULT_JITTER = (0.05, 0.1)  # sigmas of the jittered ground truth: a precise and a rough detector
POOL_FACTOR = 4  # images are read until this many times the wanted crops are found, then drawn from


class CalibrationDataError(BBRefinementError, ValueError):
    """The calibration images or boxes cannot give the crops INT8 quantisation needs."""


@dataclass(frozen=True)
class CalibrationSource:
    """A COCO set: ground truth, its images folder and, optionally, a detector's boxes of it (COCO results)."""

    annotations: Path
    images: Path
    detections: Path | None = None


def calibration_crops(
    sources: list[CalibrationSource],
    spec: RefinerSpec,
    count: int,
    jitter: tuple[float, ...] = DEFAULT_JITTER,
    seed: int = 0,
) -> CalibrationCrops:
    """`count` crops drawn at random from the training images' detections and jittered ground truth."""
    rng = np.random.default_rng(seed)
    cropper = CpuCropper(spec.input_size)
    crops: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    found = 0
    for source in sources:
        for image, boxes, refiner_ids in _training_boxes(source, spec, jitter, seed, rng):
            windows = crop_windows(boxes, spec.padding)
            crops.append(cropper.crop(image, windows).copy())
            vectors.append(mixture_vectors(refiner_ids, boxes, windows, spec.num_classes))
            found += len(boxes)
            if found >= POOL_FACTOR * count:
                break
    cropper.close()
    if found < count:
        raise CalibrationDataError(f"only {found} boxes of the refiner's classes in the training images; "
                                   f"INT8 calibration wants {count}: add images or lower the crop count")
    chosen = np.sort(rng.choice(found, size=count, replace=False))
    return CalibrationCrops(np.concatenate(crops)[chosen], np.concatenate(vectors)[chosen])


def _training_boxes(source: CalibrationSource, spec: RefinerSpec, jitter: tuple[float, ...], seed: int, rng: np.random.Generator):
    """(image, usable boxes xyxy, refiner class ids) per training image, in a seeded random order."""
    ground_truth = load_ground_truth(source.annotations)
    image_ids = [i for i in sorted(ground_truth.imgs) if not is_validation(ground_truth.imgs[i]["file_name"])]
    categories = sorted(ground_truth.cats.values(), key=lambda category: category["id"])
    gt_mapping = ClassMapping.by_name(tuple(c["name"] for c in categories), spec.class_names)
    class_of = {category["id"]: index for index, category in enumerate(categories)}
    jittered = [jittered_detections(ground_truth, image_ids, sigma, seed) for sigma in jitter]
    detector = load_coco_results(source.detections, source.annotations) if source.detections else None
    detector_mapping = ClassMapping.by_name(detector.class_names, spec.class_names) if detector else None
    for index in rng.permutation(len(image_ids)):
        image_id = image_ids[index]
        file_name = ground_truth.imgs[image_id]["file_name"]
        image = cv2.imread(str(source.images / file_name), cv2.IMREAD_COLOR)
        if image is None:
            raise CalibrationDataError(f"cannot read calibration image {source.images / file_name}; check the images folder")
        parts = [(boxes, gt_mapping.to_refiner([class_of[int(c)] for c in cats])) for boxes, _, cats in (j[image_id] for j in jittered)]
        if detector is not None:
            detections = detector.detect(Frame(0, image, None, file_name))
            parts.append((detections.boxes, detector_mapping.to_refiner(detections.class_ids)))
        boxes = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 4))
        ids = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        keep = usable_boxes(boxes, image.shape[1], image.shape[0]) & (ids >= 0)
        if keep.any():
            yield image, boxes[keep], ids[keep]
