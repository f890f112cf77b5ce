"""The public API: `from pipeline import Refiner` on the committed refiner, tiny ONNX files, Ultralytics and supervision."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from pipeline import Detections, RefinedDetections, Refiner, RefineStatus, UsageError
from pipeline.core.spec import RefinerSpec
from pipeline.model.checkpoint import save_refiner
from pipeline.model.defaults import DEMO_VIDEO, default_refiner
from pipeline.model.export import export_onnx
from pipeline.model.net import RefinerNet
import pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PERSON_FRAME = 120  # a person walks through the room here (YOLOv8n: person 0.93)
PERSON_BOX = [380.0, 20.0, 522.0, 385.0]  # around her (YOLOv8n: 384, 17, 520, 391), a few pixels off


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    capture = cv2.VideoCapture(str(DEMO_VIDEO))
    capture.set(cv2.CAP_PROP_POS_FRAMES, PERSON_FRAME)
    ok, image = capture.read()
    capture.release()
    assert ok
    return image


@pytest.fixture(scope="module")
def refiner() -> Refiner:
    with Refiner(backend="onnxruntime", device="cpu") as committed:
        yield committed


def test_public_names_are_exported_and_unknown_ones_are_not():
    assert pipeline.Refiner is Refiner and "Refiner" in pipeline.__all__
    assert set(pipeline.__all__) == {
        "Refiner", "RefinedDetections", "build_frame_refiner", "RefineStatus", "Detections", "RefinerSpec", "TrackOptions", "Tracker",
        "BBRefinementError", "BackendError", "ClassMappingError", "DefaultModelError", "ModelFileError", "SpecError", "UsageError",
    }
    with pytest.raises(AttributeError):
        pipeline.no_such_name  # noqa: B018


def test_default_is_the_one_committed_person_refiner(refiner):
    assert refiner.path == default_refiner() and refiner.path.name.startswith("refiner-person-")
    assert "person" in refiner.class_names and refiner.backend == "onnxruntime"


def test_refine_keeps_order_refines_known_classes_and_passes_others_through(refiner, frame):
    boxes = np.array([[10, 10, 60, 50], PERSON_BOX, [0, 0, 0, 0]], dtype=np.float64)
    result = refiner.refine(frame, boxes, ["skateboard", "person", "person"])
    assert result.boxes.shape == (3, 4) and len(result) == 3
    assert result.status == (RefineStatus.UNMAPPED, RefineStatus.REFINED, RefineStatus.UNUSABLE)
    np.testing.assert_array_equal(result.boxes[[0, 2]], boxes[[0, 2]])  # passed through exactly
    assert not np.allclose(result.boxes[1], boxes[1])  # the person box moved...
    assert np.abs(result.boxes[1] - boxes[1]).max() < 0.25 * (boxes[1, 3] - boxes[1, 1])  # ...a little
    assert result.predicted_iou.shape == (3, 2)
    assert np.isnan(result.predicted_iou[[0, 2]]).all() and ((0 <= result.predicted_iou[1]) & (result.predicted_iou[1] <= 1)).all()
    assert result.changed.tolist() == [False, True, False]
    assert isinstance(result, RefinedDetections) and result.detections.names == ("skateboard", "person", "person")


def test_refine_takes_one_class_name_for_all_boxes_and_no_boxes(refiner, frame):
    assert refiner.refine(frame, np.zeros((0, 4)), []).boxes.shape == (0, 4)
    twice = refiner.refine(frame, [PERSON_BOX, PERSON_BOX], "pedestrian")  # an alias of "person"
    assert twice.status == (RefineStatus.REFINED, RefineStatus.REFINED)
    np.testing.assert_allclose(twice.boxes[0], twice.boxes[1])
    with pytest.raises(ValueError, match="one name per box"):
        refiner.refine(frame, [PERSON_BOX], ["person", "person"])


def test_api_and_app_give_the_same_boxes(refiner, frame, tmp_path):
    """The app's refine stage and the API are one builder: same frame and box, same refined box."""
    from pipeline.app.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "frame.png"), frame)
    detections = tmp_path / "det.txt"  # MOT det.txt: frame, id, left, top, width, height, score
    x1, y1, x2, y2 = PERSON_BOX
    detections.write_text(f"1,-1,{x1},{y1},{x2 - x1},{y2 - y1},0.9\n")
    arguments = ["--source", str(folder), "--detector", str(detections), "--backend", "onnxruntime", "--device", "cpu"]
    assert main([*arguments, "--output", str(tmp_path / "run")]) == 0
    record = json.loads((tmp_path / "run" / "detections.jsonl").read_text().splitlines()[0])
    api = refiner.refine(frame, [PERSON_BOX], ["person"])
    np.testing.assert_allclose(record["objects"][0]["refined_box"], api.boxes[0], atol=0.01)


def tiny_checkpoint(path, predicts_iou: bool = True):
    torch.manual_seed(0)
    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("person", "car"), predicts_iou=predicts_iou)
    return save_refiner(RefinerNet(spec), path)


def test_an_onnx_file_and_a_checkpoint_agree(tmp_path, frame):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    onnx_path = export_onnx(_load(checkpoint), tmp_path / "tiny.onnx", 8)
    from_onnx = Refiner(onnx_path, device="cpu").refine(frame, [PERSON_BOX], ["car"])
    from_torch = Refiner(checkpoint, backend="torch", device="cpu").refine(frame, [PERSON_BOX], ["car"])
    np.testing.assert_allclose(from_onnx.boxes, from_torch.boxes, atol=0.05)


def _load(checkpoint):
    from pipeline.model.checkpoint import load_refiner

    return load_refiner(checkpoint)


def test_a_refiner_without_an_iou_head_reports_no_predicted_iou(tmp_path, frame):
    plain = Refiner(tiny_checkpoint(tmp_path / "plain.safetensors", predicts_iou=False), backend="torch", device="cpu")
    result = plain.refine(frame, [PERSON_BOX], ["person"])
    assert np.isnan(result.predicted_iou).all() and result.status == (RefineStatus.REFINED,)


def test_a_users_detections_are_refined_by_class_name_and_come_back_in_their_classes(refiner, frame):
    boxes = np.array([PERSON_BOX, [10, 10, 60, 50]])
    mine = Detections(boxes, [0.9, 0.4], [0, 2], ("person", "bicycle", "dog"))
    result = refiner.refine(frame, mine)
    named = refiner.refine(frame, boxes, ["person", "dog"], [0.9, 0.4])
    assert result.detections is mine and result.status == (RefineStatus.REFINED, RefineStatus.UNMAPPED)
    np.testing.assert_array_equal(result.boxes, named.boxes)
    assert refiner.refine(frame, mine[[1]]).status == (RefineStatus.UNMAPPED,)
    with pytest.raises(UsageError, match="pass it alone"):
        refiner.refine(frame, mine, ["person", "dog"])


@pytest.mark.parametrize(("class_names", "message"), [
    (None, "give class_names"),
    ([0], "class_names must be names, got 0; for class ids pass Detections"),
    (np.array([0]), "class_names must be names"),
])
def test_class_ids_without_names_are_one_clear_error(refiner, frame, class_names, message):
    with pytest.raises(UsageError, match=message):
        refiner.refine(frame, [PERSON_BOX], class_names)


def test_refine_ultralytics_returns_results_with_refined_boxes(refiner, frame):
    from pipeline.io.ultralytics_offline import import_ultralytics

    import_ultralytics(num_threads=1)
    from ultralytics.engine import results as results_module
    names = {0: "person", 1: "bicycle"}
    data = torch.tensor([[*PERSON_BOX, 0.93, 0.0], [10.0, 10.0, 60.0, 50.0, 0.5, 1.0]])
    original = results_module.Results(frame, path="frame.png", names=names, boxes=data)
    (refined,) = refiner.refine_ultralytics([original])
    assert isinstance(refined, results_module.Results) and len(refined.boxes) == 2
    expected = refiner.refine(frame, data[:, :4].numpy(), ["person", "bicycle"]).boxes
    np.testing.assert_allclose(refined.boxes.xyxy.numpy(), expected, atol=0.01)
    assert refined.boxes.cls.tolist() == [0.0, 1.0] and refined.boxes.conf[0].item() == pytest.approx(0.93)
    np.testing.assert_allclose(original.boxes.xyxy.numpy(), data[:, :4].numpy())  # the input is not modified


def test_supervision_detections_in_and_out(refiner, frame):
    sv = pytest.importorskip("supervision")
    detections = sv.Detections(
        xyxy=np.array([PERSON_BOX, [10, 10, 60, 50]], dtype=np.float32),
        confidence=np.array([0.93, 0.5]),
        class_id=np.array([0, 1]),
        data={"class_name": np.array(["person", "bicycle"])},
    )
    refined = refiner.refine_supervision(frame, detections)
    assert isinstance(refined, sv.Detections) and len(refined) == 2
    assert refined.data["refine_status"].tolist() == ["refined", "unmapped"]
    assert refined.data["predicted_iou"].shape == (2, 2)
    assert not np.allclose(refined.xyxy[0], detections.xyxy[0]) and np.allclose(refined.xyxy[1], detections.xyxy[1])
    with pytest.raises(ValueError, match="class_name"):
        refiner.refine_supervision(frame, sv.Detections(xyxy=detections.xyxy, class_id=detections.class_id))


def test_classes_are_checked_before_the_model_is_loaded(tmp_path, monkeypatch):
    import pipeline.refine.refiner
    from pipeline import ClassMappingError, build_frame_refiner

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the class check")

    monkeypatch.setattr(pipeline.refine.refiner, "open_backend", no_loading)
    with pytest.raises(ClassMappingError, match="no detector class"):
        build_frame_refiner(tiny_checkpoint(tmp_path / "tiny.safetensors"), ("dog", "cat"))


def test_track_gives_ids_along_frames_and_reuses_a_box_that_held_still(refiner, frame):
    from pipeline.track.reuse import ReuseSettings
    from pipeline.track.stream import TrackOptions

    with Refiner(backend="onnxruntime", device="cpu", track=TrackOptions(reuse=ReuseSettings())) as tracking:
        boxes = np.array([PERSON_BOX, [10.0, 10.0, 60.0, 120.0]])
        first = tracking.refine(frame, boxes, "person", [0.9, 0.8])
        second = tracking.refine(frame, boxes + 1, "person", [0.9, 0.8])
    assert first.track_ids.tolist() == second.track_ids.tolist() and len(set(first.track_ids.tolist())) == 2
    assert RefineStatus.REUSED in second.status
    assert refiner.refine(frame, boxes, "person").track_ids is None  # off by default
