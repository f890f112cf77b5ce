"""Detectors: the Detections container, Ultralytics models and replayed detection files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import DetectorError
from pipeline.core.types import Detections, Frame
from pipeline.io.detection_files import MOT_CLASS_NAMES, load_coco_results, load_mot_detections
from pipeline.io.detectors import OPENVINO_CPU_SHARE, UltralyticsDetector, open_detector, profile_of_model
from pipeline.io.sources import open_source


def frame(index: int, name: str = "clip.mp4#0", size: tuple[int, int] = (48, 64)) -> Frame:
    return Frame(index, np.zeros((*size, 3), np.uint8), None, name)


def test_detections_coerce_dtypes_and_accept_empty():
    detections = Detections([[1, 2, 3, 4]], [0.5], [1], ("a", "b"))
    assert detections.boxes.dtype == np.float64 and detections.class_ids.dtype == np.int64 and len(detections) == 1
    empty = Detections.empty(("a",))
    assert empty.boxes.shape == (0, 4) and len(empty) == 0


@pytest.mark.parametrize(
    "boxes, scores, class_ids, names, message",
    [
        ([[1, 2, 3]], [0.5], [0], ("a",), r"\(N, 4\)"),
        ([[1, 2, 3, 4]], [0.5, 0.6], [0], ("a",), "disagree in length"),
        ([[1, 2, 3, 4]], [0.5], [2], ("a", "b"), "class ids must lie"),
        ([[1, 2, 3, 4]], [0.5], [0], (), "class names"),
    ],
)
def test_detections_reject_inconsistent_input(boxes, scores, class_ids, names, message):
    with pytest.raises(ValueError, match=message):
        Detections(boxes, scores, class_ids, names)


def test_mot_rows_replay_by_one_based_frame_number(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,10,20,30,40,0.9,-1,-1,-1\n1,-1,0,0,5,5,0.3\n\n3,-1,1.5,2.5,10,10,1\n")
    detector = load_mot_detections(path)
    assert detector.class_names == MOT_CLASS_NAMES
    first = detector.detect(frame(0))
    np.testing.assert_allclose(first.boxes, [[10, 20, 40, 60], [0, 0, 5, 5]])
    np.testing.assert_allclose(first.scores, [0.9, 0.3])
    assert len(detector.detect(frame(1))) == 0
    np.testing.assert_allclose(detector.detect(frame(2)).boxes, [[1.5, 2.5, 11.5, 12.5]])


def test_malformed_mot_row_names_its_line(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,10,20,30,40,0.9\n2,-1,oops\n")
    with pytest.raises(DetectorError, match=r"det\.txt:2"):
        load_mot_detections(path)


def coco_files(tmp_path: Path) -> tuple[Path, Path]:
    gt = {
        "images": [{"id": 7, "file_name": "clip.mp4#0"}, {"id": 9, "file_name": "seq/img1/000002.jpg"}],
        "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
        "annotations": [],
    }
    results = [
        {"image_id": 7, "category_id": 3, "bbox": [1, 2, 10, 20], "score": 0.8},
        {"image_id": 9, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.4},
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path / "results.json", tmp_path / "gt.json"


def test_coco_results_use_gt_names_and_image_ids_by_path_suffix(tmp_path):
    results, gt = coco_files(tmp_path)
    detector = open_detector(results, coco_gt=gt)
    assert detector.class_names == ("person", "car")  # category id order
    video_frame = detector.detect(frame(0, "clip.mp4#0"))
    np.testing.assert_allclose(video_frame.boxes, [[1, 2, 11, 22]])
    assert video_frame.class_names[video_frame.class_ids[0]] == "car"
    image = detector.detect(frame(1, "/data/mot/seq/img1/000002.jpg"))
    assert image.class_names[image.class_ids[0]] == "person" and image.scores[0] == pytest.approx(0.4)
    with pytest.raises(DetectorError, match="is not an image of"):
        detector.detect(frame(2, "other.mp4#2"))


def test_coco_results_without_gt_use_frame_index_plus_one(tmp_path):
    results, _ = coco_files(tmp_path)
    detector = load_coco_results(results)
    assert detector.profile == "generic"  # who made a detections file is unknown
    assert detector.class_names == ("1", "3")
    assert len(detector.detect(frame(6))) == 1 and len(detector.detect(frame(8))) == 1
    assert len(detector.detect(frame(0))) == 0


def test_bad_detection_files_raise_detector_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    with pytest.raises(DetectorError, match="not a COCO results list"):
        open_detector(tmp_path / "bad.json")
    with pytest.raises(DetectorError, match="does not exist"):
        open_detector(tmp_path / "missing.txt")
    with pytest.raises(DetectorError, match="does not exist"):
        open_detector(tmp_path / "missing.pt")


def test_mot17_mini_detections_replay_on_its_images(mot17_mini):
    sequence = mot17_mini / "sequences" / "MOT17-05-FRCNN"
    from_txt = open_detector(sequence / "det" / "det.txt")
    from_json = open_detector(
        mot17_mini / "annotations" / "det_results.json", coco_gt=mot17_mini / "annotations" / "gt_pedestrian.json"
    )
    for image_frame in open_source(str(sequence / "img1")):
        txt, coco = from_txt.detect(image_frame), from_json.detect(image_frame)
        assert len(txt) == len(coco) > 0
        np.testing.assert_allclose(np.sort(txt.boxes, axis=0), np.sort(coco.boxes, axis=0), atol=1e-3)


@pytest.fixture(scope="module")
def untrained_yolo(tmp_path_factory) -> Path:
    """A random-init YOLOv8n built from its yaml (no download), saved as a .pt file."""
    from pipeline.io.ultralytics_offline import import_ultralytics

    path = tmp_path_factory.mktemp("yolo") / "yolov8n-untrained.pt"
    import_ultralytics().YOLO("yolov8n.yaml").save(str(path))
    return path


def test_ultralytics_detector_returns_valid_detections(untrained_yolo):
    detector = open_detector(untrained_yolo, imgsz=64, conf=0.0, device="cpu")
    assert isinstance(detector, UltralyticsDetector) and detector.profile == "yolov8n"  # its calibration profile
    assert len(detector.class_names) == 80  # a yaml-built model names its classes "0".."79"
    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    detections = detector.detect(Frame(0, image, None, "x"))
    assert isinstance(detections, Detections) and detections.class_names == detector.class_names
    assert detections.boxes.shape[1] == 4 and len(detections.scores) == len(detections)


def test_unreadable_model_is_a_detector_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="cannot run"):
        UltralyticsDetector(path)


@pytest.mark.slow
def test_openvino_export_finds_the_boxes_of_the_pt_it_came_from(mot17_mini, openvino_detector):
    """The committed .pt exported to OpenVINO, against the .pt on real crowd frames: same classes, same boxes."""
    from pipeline.core.geometry import match_boxes
    from pipeline.model.defaults import DETECTOR_PT, MODELS_DIR

    reference = UltralyticsDetector(MODELS_DIR / DETECTOR_PT, device="cpu", warm_up=False)
    exported = UltralyticsDetector(openvino_detector, device="cpu")  # warm-up: recompiled to share the CPU
    assert exported.class_names == reference.class_names and len(exported.class_names) == 80
    compiled = exported._model.predictor.model.backend.ov_compiled_model
    assert compiled.get_property("INFERENCE_NUM_THREADS") == OPENVINO_CPU_SHARE["INFERENCE_NUM_THREADS"]
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
    frames = [
        Frame(0, image_frame.image, None, image_frame.name)
        for sequence in ("MOT17-02-FRCNN", "MOT17-11-FRCNN")
        for image_frame in list(open_source(str(mot17_mini / "sequences" / sequence / "img1")))[:2]
    ]
    for image_frame in frames:
        ours, theirs = reference.detect(image_frame), exported.detect(image_frame)
        assert len(ours) >= 5  # a crowd
        first, second, ious = match_boxes(ours.boxes, theirs.boxes)
        assert (ours.class_ids[first] == theirs.class_ids[second]).all()
        assert len(ious) >= 0.9 * max(len(ours), len(theirs))  # boxes near the threshold may come and go
        assert ious.min() > 0.95


def test_committed_yolov8n_finds_the_golden_boxes_on_real_frames():
    """The committed YOLOv8n on real frames of the bundled clip: xyxy boxes where the golden file says
    (tests/pipeline/golden.py), so a box returned as xywh (or any other format slip) fails here."""
    from tests.pipeline import golden

    reference = golden.load()
    detector = UltralyticsDetector(golden.DETECTOR, **golden.DETECTOR_OPTIONS)
    images = golden.clip_frames()
    for frame_data in reference["frames"]:
        index = frame_data["index"]
        found = detector.detect(Frame(index, images[index], None, f"clip#{index}"))
        expected = frame_data["detections"]
        assert [found.class_names[c] for c in found.class_ids] == [d["class"] for d in expected], index
        np.testing.assert_allclose(found.boxes, [d["box"] for d in expected], rtol=0, atol=0.5, err_msg=f"frame {index}")
        np.testing.assert_allclose(found.scores, [d["score"] for d in expected], rtol=0, atol=2e-3)
        person = found.boxes[[found.class_names[c] == "person" for c in found.class_ids]][0]
        height, width = images[index].shape[:2]
        x1, y1, x2, y2 = person  # a standing person in the frame: corners in order, taller than wide
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height and (y2 - y1) > 1.5 * (x2 - x1)


@pytest.mark.parametrize("model, profile", [
    ("models/yolov8n-coco.pt", "yolov8n"),
    ("yolo11s.pt", "yolo11s"),
    ("runs/YOLOv5su_openvino_model", "yolov5su"),
    ("best.pt", "generic"),  # a name that says nothing: --profile says it
    ("rtdetr-l.pt", "generic"),
])
def test_an_ultralytics_model_gets_the_calibration_profile_its_name_says(model, profile):
    assert profile_of_model(Path(model)) == profile
