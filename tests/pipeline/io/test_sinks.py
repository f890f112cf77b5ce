"""Sinks: JSONL per frame (flushed), annotated video, atomic summary, progress output."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import resource
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.core.errors import OutputError
from pipeline.core.types import NO_TRACK, Detections, Frame, FrameResult, RefinedDetections, RefineStatus, Tracks
from pipeline.io.sinks import (
    DETECTOR_COLOUR,
    REFINED_COLOUR,
    AnnotatedVideoSink,
    JsonlSink,
    PerStream,
    ProgressSink,
    draw_result,
    frame_record,
    write_failure,
    write_summary,
)

NAMES = ("person", "car")


def result(index: int = 0, size: tuple[int, int] = (64, 96)) -> FrameResult:
    detections = Detections([[10, 10, 40, 50], [50, 5, 90, 30]], [0.9, 0.4], [0, 1], NAMES)
    objects = RefinedDetections(
        detections,
        np.array([[12, 11, 38, 47], [np.nan] * 4]),
        (RefineStatus.REFINED, RefineStatus.UNMAPPED),
        np.array([[0.7, 0.85], [np.nan, np.nan]]),
    )
    return FrameResult(Frame(index, np.full((*size, 3), 30, np.uint8), index / 10, f"clip.mp4#{index}"), objects)


def test_frame_record_holds_both_boxes_status_and_predicted_iou():
    record = frame_record(result(3))
    assert record["frame"] == 3 and record["timestamp"] == pytest.approx(0.3) and record["name"] == "clip.mp4#3"
    person, car = record["objects"]
    assert person == {
        "class": "person",
        "score": pytest.approx(0.9),
        "output_score": pytest.approx(0.9),
        "detector_box": [10.0, 10.0, 40.0, 50.0],
        "refined_box": [12.0, 11.0, 38.0, 47.0],
        "status": "refined",
        "predicted_iou": {"input": 0.7, "refined": 0.85},
    }
    assert car["refined_box"] is None and car["status"] == "unmapped" and car["predicted_iou"] is None
    json.dumps(record, allow_nan=False)


def test_tracked_records_carry_the_track_id_and_the_smoothed_box():
    plain = result(2)
    assert "track" not in frame_record(plain)["objects"][0]
    tracks = Tracks(np.array([7, NO_TRACK]), np.array([[12.5, 11, 38, 47], [50, 5, 90, 30]]), smoothed=True)
    person, car = frame_record(FrameResult(plain.frame, plain.objects, stream=1, tracks=tracks), tag_stream=True)["objects"]
    assert person["track"] == 7 and person["track_box"] == [12.5, 11.0, 38.0, 47.0] and car["track"] is None
    ids_only = frame_record(FrameResult(plain.frame, plain.objects, tracks=replace(tracks, smoothed=False)))["objects"][0]
    assert ids_only["track"] == 7 and "track_box" not in ids_only


def test_a_tracked_label_starts_with_the_track_id():
    plain = result(size=(360, 640))
    detections = Detections([[300, 100, 400, 200]], [0.4], [1], NAMES)
    untracked = FrameResult(plain.frame, RefinedDetections.untouched(detections, RefineStatus.UNMAPPED))
    tracked = replace(untracked, tracks=Tracks(np.array([123456]), detections.boxes, smoothed=False))
    tags = [draw_result(item.frame.image, item)[88:99, 302:420] for item in (untracked, tracked)]
    assert (tags[1] == DETECTOR_COLOUR).all(axis=2).sum() > (tags[0] == DETECTOR_COLOUR).all(axis=2).sum()  # a longer tag


def test_jsonl_has_one_flushed_line_per_frame_before_close(tmp_path):
    sink = JsonlSink(tmp_path / "detections.jsonl")
    for index in range(3):
        sink.write(result(index))
        lines = (tmp_path / "detections.jsonl").read_text().splitlines()
        assert len(lines) == index + 1 and json.loads(lines[-1])["frame"] == index
    sink.close()


def test_jsonl_tags_each_line_with_its_stream_only_when_asked(tmp_path):
    tagged, plain = JsonlSink(tmp_path / "many.jsonl", tag_stream=True), JsonlSink(tmp_path / "one.jsonl")
    for sink in (tagged, plain):
        sink.write(replace(result(0), stream=2))
        sink.close()
    assert json.loads((tmp_path / "many.jsonl").read_text())["stream"] == 2
    assert "stream" not in json.loads((tmp_path / "one.jsonl").read_text())


class Recording:
    def __init__(self) -> None:
        self.frames: list[int] = []
        self.closed = False

    def write(self, result: FrameResult) -> None:
        self.frames.append(result.frame.index)

    def close(self) -> None:
        self.closed = True


def test_per_stream_sends_each_result_to_its_streams_sink_and_closes_all():
    sinks = [Recording(), Recording()]
    router = PerStream(sinks)
    for index, stream in enumerate((1, 0, 1)):
        router.write(replace(result(index), stream=stream))
    router.close()
    assert [sink.frames for sink in sinks] == [[1], [0, 2]] and all(sink.closed for sink in sinks)


def test_jsonl_never_overwrites(tmp_path):
    (tmp_path / "detections.jsonl").write_text("old run\n")
    with pytest.raises(FileExistsError):
        JsonlSink(tmp_path / "detections.jsonl")


def test_drawing_uses_one_colour_per_box_kind():
    canvas = draw_result(result().frame.image, result())
    assert tuple(canvas[30, 10]) == DETECTOR_COLOUR  # left edge of the detector box
    assert tuple(canvas[30, 12]) == REFINED_COLOUR  # left edge of the refined box
    assert tuple(canvas[20, 50]) == DETECTOR_COLOUR  # unrefined car: detector box only
    assert (result().frame.image == 30).all()  # the frame itself is not drawn on


def test_frames_with_room_get_a_legend_and_class_score_labels():
    plain = result(size=(360, 640))
    canvas = draw_result(plain.frame.image, plain)
    assert tuple(canvas[20, 20]) == DETECTOR_COLOUR and tuple(canvas[37, 20]) == REFINED_COLOUR  # legend swatches
    assert (canvas[10:48, 8:186] == 0).any() and (canvas[10:48, 8:186] == 255).any()  # black panel, white words
    # A label: a filled orange tag above the box's top-left corner, with dark text on it ("car 0.40").
    detections = Detections([[300, 100, 400, 200]], [0.4], [1], NAMES)
    car = FrameResult(plain.frame, RefinedDetections.untouched(detections, RefineStatus.UNMAPPED))
    tag = draw_result(car.frame.image, car)[88:99, 302:340].reshape(-1, 3)
    assert (tag == DETECTOR_COLOUR).all(axis=1).mean() > 0.3 and (tag < 60).all(axis=1).any()
    assert tuple(draw_result(result().frame.image, result())[25, 25]) == (30, 30, 30)  # a thumbnail gets no legend


def test_annotated_video_has_every_frame(tmp_path):
    sink = AnnotatedVideoSink(tmp_path / "annotated.mp4", fps=None)
    for index in range(5):
        sink.write(result(index))
    sink.close()
    capture = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (96, 64)
    capture.release()


def test_summary_is_replaced_atomically(tmp_path):
    path = tmp_path / "summary.json"
    write_summary(path, {"status": "running", "frames": 1})
    write_summary(path, {"status": "completed", "frames": 2})
    assert json.loads(path.read_text()) == {"status": "completed", "frames": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temp file left behind


def test_progress_for_streams_is_a_live_fps_line(monkeypatch):
    clock = iter(np.arange(0.0, 100.0, 0.6))
    monkeypatch.setattr("pipeline.io.sinks.time.monotonic", lambda: float(next(clock)))
    stream = io.StringIO()
    progress = ProgressSink(None, dropped=lambda: 7, stream=stream)
    for _ in range(4):
        progress.write(result())
    progress.close()
    assert "FPS" in stream.getvalue() and "7 dropped" in stream.getvalue()


def test_progress_for_files_is_a_bar():
    stream = io.StringIO()
    progress = ProgressSink(3, dropped=lambda: 0, stream=stream)
    for _ in range(3):
        progress.write(result())
    progress.close()
    assert "3/3" in stream.getvalue()


@contextlib.contextmanager
def size_limit(bytes_: int):
    """A real per-file size limit (ulimit -f) on this process; Python ignores SIGXFSZ, so a write past it raises EFBIG."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (bytes_, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_jsonl_at_a_size_limit_ends_on_a_whole_line_and_names_file_and_cause(tmp_path):
    path = tmp_path / "detections.jsonl"
    line_bytes = len(json.dumps(frame_record(result(0)))) + 1
    sink = JsonlSink(path)
    with size_limit(int(line_bytes * 3.5)), pytest.raises(OutputError) as caught:
        for index in range(10):
            sink.write(result(index))
    sink.close()
    message = str(caught.value)
    assert str(path) in message and "file size limit" in message and "\n" not in message
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and [json.loads(line)["frame"] for line in lines[:-1]] == [0, 1, 2]
    assert sink.report() == {"frames": 3, "error": message}


def test_video_at_a_size_limit_stops_in_time_and_stays_playable(tmp_path):
    path = tmp_path / "annotated.mp4"
    sink = AnnotatedVideoSink(path, fps=10)
    noise = np.random.default_rng(0)
    written = 0
    with size_limit(600 * 1024), pytest.raises(OutputError, match="file size limit") as caught:
        for index in range(400):  # noisy 320x240 frames: far more than 600 KiB of mp4v
            frame = result(index, (240, 320))
            frame.frame.image[:] = noise.integers(0, 256, frame.frame.image.shape, dtype=np.uint8)
            sink.write(frame)
            written += 1
    sink.close()
    assert 0 < written == sink.frames_written < 400 and str(path) in str(caught.value)
    capture = cv2.VideoCapture(str(path))
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    assert decoded == written


def test_write_failure_names_the_cause():
    assert "disk is full" in str(write_failure(Path("x.jsonl"), OSError(errno.ENOSPC, "No space left on device")))
    assert "x.jsonl" in str(write_failure(Path("x.jsonl"), OSError(errno.EIO, "Input/output error")))


def test_video_frames_of_another_size_are_resized_not_dropped(tmp_path):
    sink = AnnotatedVideoSink(tmp_path / "annotated.mp4", fps=10)
    for index, size in enumerate([(64, 96), (128, 96), (40, 50)]):
        sink.write(result(index, size))
    sink.close()
    capture = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    shapes = []
    while (frame := capture.read())[0]:
        shapes.append(frame[1].shape[:2])
    capture.release()
    assert shapes == [(64, 96)] * 3 and sink.frames_written == 3
