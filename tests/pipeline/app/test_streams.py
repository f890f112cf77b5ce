"""Many streams in one run: cycles of frames, one refiner call per cycle, streams that end or die alone."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.app.cli import main
from pipeline.app.run import RunConfig, detect_cycle, run
from pipeline.app.streams import StreamMux
from pipeline.core.errors import SourceError
from pipeline.core.types import Detections, Frame
from pipeline.io.sources import CaptureSource, FrameSource, open_source
from pipeline.refine.crop_ring import CropperRing
from tests.pipeline.refine.test_refiner import backend, mixed_detections, refiner  # noqa: F401  (backend is a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WAIT_FOR_ALL = "100000"  # ms: every cycle waits for every running file stream, so cycles are deterministic


class CountedFrames(FrameSource):
    """`count` small frames, then either the end or (with `fail`) the error of a stream that stays down.

    `hold`: after the first frame, wait until it is set (a test decides when the rest arrive).
    """

    def __init__(self, count: int, live: bool = False, fail: bool = False, hold: threading.Event | None = None) -> None:
        self.count, self.live, self.fail, self.hold = count, live, fail, hold
        self.description = f"{'failing ' if fail else ''}{count} frames"
        self.frame_count = None if live else count
        self.exhausted = threading.Event()  # set when asked for a frame after the last: every frame was handed on

    def __iter__(self) -> Iterator[Frame]:
        for index in range(self.count):
            yield Frame(index, np.full((64, 96, 3), index, dtype=np.uint8), None, f"counted#{index}")
            if index == 0 and self.hold is not None:
                self.hold.wait(30)
        self.exhausted.set()
        if self.fail:
            raise SourceError(f"{self.description} dropped and did not come back")


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "detections.jsonl").read_text().splitlines()]


def video_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count


def test_two_streams_write_every_frame_by_stream_and_share_one_refiner_call_per_cycle(inputs, tmp_path):
    sources_file = tmp_path / "sources.txt"
    sources_file.write_text(f"# cameras\n{inputs['b']}\n\n")
    code = main([
        "--source", str(inputs["a"]), "--sources", str(sources_file), "--detector", str(inputs["detections"]),
        "--refiner", str(inputs["refiner"]), "--backend", "torch", "--device", "cpu", "--output", str(tmp_path / "run"),
        "--batch-timeout-ms", WAIT_FOR_ALL,
    ])  # fmt: skip
    assert code == 0
    lines = records(tmp_path / "run")
    for stream in (0, 1):
        assert [line["frame"] for line in lines if line["stream"] == stream] == list(range(12))
    assert {line["objects"][0]["status"] for line in lines} == {"refined"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["frames"]["processed"] == 24 and summary["frames"]["cycles"] == 12
    assert [s["frames"]["processed"] for s in summary["streams"]] == [12, 12]
    assert [s["refinement"]["sent_to_network"] for s in summary["streams"]] == [24, 24]  # counted per stream too
    assert summary["refinement"]["sent_to_network"] == 48 and summary["refinement"]["skipped"] == {"gain": 0, "budget": 0}
    calls = summary["refiner_calls"]
    # Two detections per frame, both streams in every cycle: 12 calls of 4 crops, not 24 calls of 2.
    assert calls["calls"] == calls["cycle_calls"] == 12
    assert calls["mean_batch_size"] == 4.0 and calls["mean_streams_per_call"] == 2.0
    assert [video_frames(tmp_path / "run" / name) for name in summary["outputs"]["videos"]] == [12, 12]
    assert summary["outputs"]["videos"] == ["annotated-0.mp4", "annotated-1.mp4"]


def test_track_numbers_each_streams_objects_on_its_own_and_reuse_crops_fewer_boxes(inputs, tmp_path):
    code = main([
        "--source", str(inputs["a"]), "--source", str(inputs["b"]), "--detector", str(inputs["detections"]),
        "--refiner", str(inputs["refiner"]), "--backend", "torch", "--device", "cpu", "--output", str(tmp_path / "run"),
        "--batch-timeout-ms", WAIT_FOR_ALL, "--track", "--reuse", "--policy", "replace",
    ])  # fmt: skip
    assert code == 0
    lines = records(tmp_path / "run")
    for stream in (0, 1):  # the same objects in both streams: each stream numbers them from 1
        assert all([o["track"] for o in line["objects"]] == [1, 2] for line in lines if line["stream"] == stream)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [tracks["tracks"] for tracks in summary["tracks"]] == [2, 2]
    assert summary["objects"]["reused"] > 0 and summary["refiner_calls"]["mean_batch_size"] < 4.0


def test_a_stream_that_ends_early_does_not_stop_the_other(inputs, tmp_path):
    code = main([
        "--source", str(inputs["short"]), "--source", str(inputs["a"]), "--detector", str(inputs["detections"]),
        "--no-refine", "--output", str(tmp_path / "run"), "--batch-timeout-ms", WAIT_FOR_ALL,
    ])  # fmt: skip
    assert code == 0
    lines = records(tmp_path / "run")
    assert [line["frame"] for line in lines if line["stream"] == 0] == list(range(4))
    assert [line["frame"] for line in lines if line["stream"] == 1] == list(range(12))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["frames"]["cycles"] == 12 and summary["refiner_calls"] is None


def baseline(inputs: dict[str, Path], output: Path) -> RunConfig:
    return RunConfig(source="unused", detector=inputs["detections"], refine=False, output=output, progress=False,
                     batch_timeout_ms=float(WAIT_FOR_ALL))  # fmt: skip


def test_a_stream_that_dies_leaves_a_warning_and_the_others_finish(inputs, tmp_path):
    sources = [CountedFrames(12), CountedFrames(3, fail=True)]
    report = run(baseline(inputs, tmp_path / "run"), sources=sources)
    assert report.exit_code == 0 and report.summary["status"] == "completed"
    assert [s["frames"]["processed"] for s in report.summary["streams"]] == [12, 3]
    assert report.summary["streams"][1]["error"] == "failing 3 frames dropped and did not come back"
    assert report.summary["warnings"] == ["stream 1 (failing 3 frames) failed: failing 3 frames dropped and did not come back"]


def test_the_run_fails_when_every_stream_failed(inputs, tmp_path):
    report = run(baseline(inputs, tmp_path / "run"), sources=[CountedFrames(2, fail=True), CountedFrames(1, fail=True)])
    assert report.exit_code == 1 and report.summary["status"] == "failed"
    assert report.summary["error"].startswith("every stream failed") and len(records(tmp_path / "run")) == 3


def test_a_live_stream_drops_its_oldest_frames_when_the_run_falls_behind():
    hold = threading.Event()
    camera = CountedFrames(10, live=True, hold=hold)
    mux = StreamMux([camera], batch_timeout_s=0.0, queue_size=2)
    cycles = iter(mux)
    first = next(cycles)
    hold.set()  # the other nine frames arrive while nobody takes cycles
    assert camera.exhausted.wait(30)
    received = [item.frame.index for cycle in [first, *cycles] for item in cycle]
    # Frame 0 taken, then a queue of two: the newest two survive, the seven between are dropped and counted.
    assert received == [0, 8, 9]
    assert mux.stats[0].dropped == 7 and mux.stats[0].read == 10


def test_finish_many_refines_every_frame_in_one_backend_call_as_one_frame_at_a_time_would(backend):  # noqa: F811
    images = [np.random.default_rng(i).integers(0, 256, (120, 160, 3), dtype=np.uint8) for i in range(5)]
    frames = [Frame(i, image, None, f"f#{i}") for i, image in enumerate(images)]
    detections = mixed_detections()
    alone = refiner(backend)
    expected = [alone(frame, detections) for frame in frames]
    # A ring of 3 croppers and 5 frames: the crops of the first frames must be copied out before reuse.
    batched = refiner(backend, cropper=CropperRing(backend.spec.input_size, workers=1, queue_size=1))
    results = batched.finish_many(batched.prepare_many([(frame, detections) for frame in frames]))
    assert batched.backend_calls == 1 and batched.crops_refined == 5 * 3
    for got, want in zip(results, expected, strict=True):
        assert got.status == want.status
        np.testing.assert_allclose(got.refined_boxes, want.refined_boxes, atol=1e-4)
        np.testing.assert_allclose(got.predicted_iou, want.predicted_iou, atol=1e-5)


def test_prepare_many_keeps_frames_without_detections_apart(backend):  # noqa: F811
    frames = [Frame(i, np.zeros((120, 160, 3), dtype=np.uint8), None, f"f#{i}") for i in range(3)]
    empty = Detections.empty(mixed_detections().class_names)
    batched = refiner(backend)
    results = batched.finish_many(batched.prepare_many([(frames[0], empty), (frames[1], mixed_detections()), (frames[2], empty)]))
    assert [len(result.detections) for result in results] == [0, 5, 0]
    assert results[1].status.count("refined") == 3 and batched.backend_calls == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-refine"], "error: no source given; pass --source SRC (repeat it for many streams) or --sources FILE"),
        (["--sources", "missing.txt"], "error: cannot read --sources missing.txt (No such file or directory); "
                                       "pass a text file, one source per line"),
        (["--source", "demo", "--source", "x.mp4"],
         "error: the demo and synthetic sources run alone; pass one --source for them"),
        (["--source", "a.mp4", "--source", "b.mp4", "--batch-timeout-ms", "-1"],
         "error: --batch-timeout-ms must be non-negative"),
    ],
)
def test_stream_arguments_fail_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == message


def test_a_single_source_keeps_the_single_stream_outputs(inputs, tmp_path):
    arguments = ["--source", str(inputs["a"]), "--detector", str(inputs["detections"]), "--no-refine"]
    code = main([*arguments, "--output", str(tmp_path / "run")])
    assert code == 0
    assert "stream" not in records(tmp_path / "run")[0] and (tmp_path / "run" / "annotated.mp4").is_file()
    assert "streams" not in json.loads((tmp_path / "run" / "summary.json").read_text())


def test_a_capture_source_file_reads_as_a_stream(inputs, tmp_path):
    sources = [CaptureSource(str(inputs["a"]), live=False), CaptureSource(str(inputs["short"]), live=False)]
    report = run(baseline(inputs, tmp_path / "run"), sources=sources)
    assert [s["frames"]["processed"] for s in report.summary["streams"]] == [12, 4]
    assert [s["frame_count"] for s in report.summary["streams"]] == [12, 4]


def test_a_cycle_is_detected_in_one_batched_call_with_the_same_boxes_as_frame_by_frame():
    from itertools import islice

    from pipeline.io.detectors import open_detector
    from pipeline.app.streams import StreamFrame

    repo = Path(__file__).resolve().parents[3]
    detector = open_detector(repo / "models" / "yolov8n-coco.pt", imgsz=320, device="cpu")
    frames = list(islice(open_source(str(repo / "assets" / "one-by-one-person-detection.mp4")), 70, 73))
    detector.detect = lambda frame: pytest.fail("a cycle must not be detected frame by frame")
    batched = detect_cycle(detector, [StreamFrame(i, frame, 0.0) for i, frame in enumerate(frames)])
    del detector.detect
    assert [item.stream for item, _ in batched] == [0, 1, 2]
    for frame, (_, detections) in zip(frames, batched, strict=True):
        alone = detector.detect(frame)
        assert len(alone) == len(detections) > 0
        np.testing.assert_allclose(detections.boxes, alone.boxes, atol=0.5)


def test_a_live_stream_that_drops_reconnects_beside_a_file_stream(inputs, tmp_path):
    from pipeline.io.sources import Reconnect

    # A file read as a live stream "drops" at its end; reopening it is a real reconnect.
    camera = CaptureSource(str(inputs["a"]), live=True, reconnect=Reconnect(tries=3, first_delay=0.01, max_delay=0.02))
    config = RunConfig(source="unused", detector=inputs["detections"], refine=False, output=tmp_path / "run", progress=False,
                       max_frames=30)  # fmt: skip
    report = run(config, sources=[camera, CaptureSource(str(inputs["short"]), live=False)])
    live, file = report.summary["streams"]
    assert report.exit_code == 0 and live["reconnects"] == 2 and live["frames"]["read"] == 30
    assert live["frames"]["processed"] + live["frames"]["dropped"] == 30 and file["frames"]["processed"] == 4
