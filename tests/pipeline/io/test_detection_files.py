"""Fuzzing the detection-file readers: any file content gives a replay detector or a DetectorError."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import DetectorError
from pipeline.core.types import Frame
from pipeline.io.detection_files import load_coco_results, load_mot_detections

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FRAME = Frame(0, np.zeros((8, 8, 3), np.uint8), None, "clip.mp4#0")

numbers = st.one_of(
    st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["nan", "inf", "-1", "1e400"])
)
mot_fields = st.one_of(numbers.map(str), st.text(max_size=6))
mot_rows = st.lists(st.lists(mot_fields, min_size=0, max_size=10).map(",".join), max_size=8).map("\n".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)
coco_entries = st.lists(
    st.fixed_dictionaries(
        {"image_id": st.one_of(st.integers(-3, 3), st.text(max_size=2), st.none()),
         "category_id": st.one_of(st.integers(0, 3), st.floats(allow_nan=True)),
         "bbox": st.one_of(st.lists(numbers.filter(lambda v: not isinstance(v, str)), max_size=6), json_values),
         "score": st.one_of(numbers, st.text(max_size=3))}
    ),
    max_size=5,
)


def replays_or_refuses(load, path) -> None:
    """The reader's whole contract: a detector whose boxes are float (N, 4), or one clear DetectorError."""
    try:
        detector = load(path)
    except DetectorError as error:
        assert str(error) and "\n" not in str(error)
        return
    detections = detector.detect(FRAME)
    assert detections.boxes.shape[1:] == (4,) and len(detections.scores) == len(detections.boxes)


@FUZZ
@given(text=mot_rows)
def test_any_mot_text_replays_or_raises_a_detector_error(tmp_path, text):
    path = tmp_path / "det.txt"
    path.write_text(text)
    replays_or_refuses(load_mot_detections, path)


@FUZZ
@given(data=st.binary(max_size=64))
def test_binary_garbage_is_a_detector_error(tmp_path, data):
    for name, load in (("det.txt", load_mot_detections), ("results.json", load_coco_results)):
        path = tmp_path / name
        path.write_bytes(data)
        replays_or_refuses(load, path)


@FUZZ
@given(results=st.one_of(coco_entries, json_values))
def test_any_coco_results_json_replays_or_raises_a_detector_error(tmp_path, results):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results, allow_nan=True))
    replays_or_refuses(load_coco_results, path)


def test_mot_frame_numbers_must_be_whole_positive_numbers(tmp_path):
    for bad in ("nan", "inf", "0", "1.5"):
        path = tmp_path / "det.txt"
        path.write_text(f"{bad},-1,1,2,3,4,0.9\n")
        try:
            load_mot_detections(path)
        except DetectorError as error:
            assert "det.txt:1" in str(error)
        else:
            raise AssertionError(f"frame number {bad} was accepted")
