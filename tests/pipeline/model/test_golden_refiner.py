"""The committed person refiner on real crops of the bundled clip: every CPU backend returns the golden outputs.

The golden file (tests/pipeline/golden.py writes it) holds torch CPU's raw outputs (box in window
coordinates, predicted IoU of the input and of the refined box) and the refined boxes in frame pixels.
A wrong edge offset, crop, normalisation or decode moves them by far more than the tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.backends import KINDS
from pipeline.core.types import Detections, Frame
from pipeline.model.artifacts import ModelFile
from pipeline.model.defaults import default_refiner
from pipeline.refine.refiner import build_frame_refiner
from tests.pipeline import golden

CPU_BACKENDS = ("torch", "onnxruntime", "openvino")
OUTPUT_ATOL = 1e-4  # window coordinates and IoUs, both 0..1
PIXEL_ATOL = 0.05  # refined boxes in frame pixels: 1e-4 of a ~400 px window, plus rounding


@pytest.fixture(scope="module")
def reference() -> dict:
    data = golden.load()
    model = ModelFile.read(default_refiner())
    assert data["refiner"]["file"] == model.path.name, "the default refiner changed: python -m tests.pipeline.golden"
    return data


@pytest.fixture(scope="module")
def images() -> dict[int, np.ndarray]:
    return golden.clip_frames()


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("kind", CPU_BACKENDS)
def test_committed_person_refiner_returns_the_golden_outputs(kind, reference, images):
    if kind not in KINDS:
        pytest.skip(f"no {kind} backend in this version")
    # fp32: the golden outputs are full precision (OpenVINO's default on a BF16 CPU is within ~1e-2, tested in backends/)
    refiner = build_frame_refiner(default_refiner(), ("person",), backend=kind, device="cpu", policy="replace", precision="fp32")
    expected = {frame["index"]: frame for frame in reference["refiner"]["frames"]}
    for index, boxes in golden.refiner_boxes(reference).items():
        detections = Detections(boxes, np.ones(len(boxes)), np.zeros(len(boxes), np.int64), ("person",))
        job = refiner.prepare(Frame(index, images[index], None, f"clip#{index}"), detections)
        outputs = refiner.backend.refine(job.crops, job.vectors)
        np.testing.assert_allclose(outputs, expected[index]["outputs"], rtol=0, atol=OUTPUT_ATOL, err_msg=f"{kind} frame {index}")
        result = refiner.finish(job)
        np.testing.assert_allclose(result.refined_boxes, expected[index]["refined_boxes"], rtol=0, atol=PIXEL_ATOL)
        np.testing.assert_allclose(result.predicted_iou, np.array(expected[index]["outputs"])[:, 4:6], rtol=0, atol=OUTPUT_ATOL)


def test_the_golden_refined_boxes_moved_the_displaced_boxes(reference):
    """The golden data is worth pinning: the refiner moves a displaced box by pixels, towards the detector's box."""
    boxes = golden.refiner_boxes(reference)
    for frame in reference["refiner"]["frames"]:
        inputs, refined = boxes[frame["index"]], np.array(frame["refined_boxes"])
        half = len(inputs) // 2
        assert np.abs(refined[half:] - inputs[half:]).max() > 5
        assert np.abs(refined[half:] - inputs[:half]).sum() < np.abs(inputs[half:] - inputs[:half]).sum()
