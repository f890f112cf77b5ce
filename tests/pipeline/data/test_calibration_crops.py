"""Calibration crops: the pipeline's own windows and vectors around training-split boxes, seeded, enough or a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.errors import BBRefinementError
from pipeline.core.spec import RefinerSpec
from pipeline.data.calibration_crops import CalibrationDataError, CalibrationSource, calibration_crops

SPEC = RefinerSpec(backbone="efficientnet_b0", input_size=64, class_names=("person",))


def source(root) -> CalibrationSource:
    return CalibrationSource(root / "annotations" / "instances_person.json", root / "images")


def test_crops_and_vectors_are_what_the_refiner_sees_and_repeat_per_seed(coco_person):
    crops = calibration_crops([source(coco_person)], SPEC, 16, seed=3)
    assert crops.crops.shape == (16, 64, 64, 3) and crops.crops.dtype == np.uint8
    assert crops.vectors.shape == (16, SPEC.vector_size) and crops.vectors.dtype == np.float32
    assert (crops.vectors[:, 0] == 1).all()  # every box is a person
    inner = 1 / (1 + 2 * SPEC.padding)  # a box fills this share of its padded window, jitter aside
    assert np.median(crops.vectors[:, 3:]) == pytest.approx(inner, abs=0.05)
    assert calibration_crops([source(coco_person)], SPEC, 16, seed=3).digest() == crops.digest()
    assert calibration_crops([source(coco_person)], SPEC, 16, seed=4).digest() != crops.digest()


def test_a_set_without_the_refiners_classes_is_a_user_error(coco_person):
    cars = RefinerSpec(backbone="efficientnet_b0", input_size=64, class_names=("car",))
    with pytest.raises(BBRefinementError, match="matches a refiner class"):
        calibration_crops([source(coco_person)], cars, 16)


def test_a_missing_image_is_a_user_error(coco_person, tmp_path):
    with pytest.raises(CalibrationDataError, match="check the images folder"):
        calibration_crops([CalibrationSource(source(coco_person).annotations, tmp_path)], SPEC, 16)
