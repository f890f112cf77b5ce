"""Real crops of COCO people, and the CPU runtimes' parity with FP32 torch on them (BF16 measured here, not assumed)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.real_crops import real_crops
from pipeline.backends import open_backend
from pipeline.model.artifacts import ModelFile
from pipeline.model.defaults import default_refiner


@pytest.fixture(scope="module")
def refiner_and_crops(coco_person):
    model = ModelFile.read(default_refiner())
    crops, vectors = real_crops(model.spec, 64, coco_person)
    return model, crops, vectors, open_backend("torch", model, "cpu").refine(crops, vectors)


def test_real_crops_are_what_the_refiner_takes(refiner_and_crops):
    model, crops, vectors, _ = refiner_and_crops
    size = model.spec.input_size
    assert crops.shape == (64, size, size, 3) and crops.dtype == np.uint8 and vectors.shape == (64, model.spec.vector_size)
    assert crops.std() > 20  # photos, not padding
    assert len({crop.tobytes() for crop in crops}) == len(crops)  # each crop its own (the cropper reuses buffers)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_meets_the_real_crops_tolerance_at_each_precision(refiner_and_crops, precision):
    pytest.importorskip("openvino")
    from pipeline.backends.openvino import REAL_CROPS_MAX_TOLERANCE, REAL_CROPS_MEAN_TOLERANCE, supported_precisions

    if precision not in supported_precisions():
        pytest.skip(f"this CPU has no native {precision}")
    model, crops, vectors, expected = refiner_and_crops
    backend = open_backend("openvino", model, "cpu", precision=precision)
    error = np.abs(backend.refine(crops, vectors) - expected)
    assert error.max() <= REAL_CROPS_MAX_TOLERANCE and error.mean() <= REAL_CROPS_MEAN_TOLERANCE
