"""summary.json layouts and the lines a run prints: one stream keeps its own layout, many add per-stream figures."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.app.run import run
from pipeline.app.summary import format_run_summary, output_files, video_names
from tests.pipeline.app.test_streams import CountedFrames, baseline

ONE_STREAM_KEYS = {
    "started_at", "source", "detector", "refiner", "device", "outputs", "status", "error", "exit_code", "elapsed_s", "fps",
    "frames", "latency_ms", "queue_occupancy", "objects", "refinement", "unfinished_stages", "refinement_change", "warnings", "files",
}  # fmt: skip
MANY_STREAM_KEYS = ONE_STREAM_KEYS - {"source"} | {"streams", "refiner_calls", "batch_timeout_ms"}


def test_one_stream_writes_annotated_mp4_and_many_one_video_each():
    assert video_names(1) == ["annotated.mp4"]
    assert video_names(3) == ["annotated-0.mp4", "annotated-1.mp4", "annotated-2.mp4"]


def test_one_stream_keeps_the_single_stream_layout_and_the_report_has_both(inputs, tmp_path):
    report = run(baseline(inputs, tmp_path / "run"), sources=[CountedFrames(5)])
    summary = report.summary
    assert set(summary) == ONE_STREAM_KEYS and summary["outputs"] == {"detections": "detections.jsonl", "video": "annotated.mp4"}
    assert summary["frames"] == {"read": 5, "processed": 5, "dropped": 0, "unfinished": 0, "lost": 0, "unreadable": 0}
    assert summary["source"]["description"] == "5 frames" and summary["latency_ms"]["end_to_end"]["count"] == 5
    assert set(report.streams_summary) == MANY_STREAM_KEYS and report.streams_summary["frames"]["cycles"] == 5
    assert output_files(summary) == "detections.jsonl, annotated.mp4, summary.json"
    assert "streams:" not in format_run_summary(summary)


def test_many_streams_report_each_stream(inputs, tmp_path):
    report = run(baseline(inputs, tmp_path / "run"), sources=[CountedFrames(3), CountedFrames(2)])
    assert set(report.summary) == MANY_STREAM_KEYS and report.summary is report.streams_summary
    assert output_files(report.summary) == "detections.jsonl, annotated-0.mp4 .. annotated-1.mp4, summary.json"
    assert "  stream 1: 2 frames" in format_run_summary(report.summary)


def test_one_failed_stream_fails_the_run_with_its_own_error(inputs, tmp_path):
    report = run(baseline(inputs, tmp_path / "run"), sources=[CountedFrames(2, fail=True)])
    assert report.exit_code == 1 and report.summary["status"] == "failed"
    assert report.summary["error"] == "read stage failed: failing 2 frames dropped and did not come back"
    assert report.summary["warnings"] == [] and report.failure is not None and report.failure.stage == "read"


def test_a_run_without_boxes_says_boxes_0(inputs, tmp_path):
    report = run(baseline(inputs, tmp_path / "run"), sources=[CountedFrames(2)], detector=NoBoxes())
    assert report.summary["objects"] == {} and "\nboxes: 0\n" in format_run_summary(report.summary) + "\n"


class NoBoxes:
    """A real detector's answer on an empty scene: no detections, every frame."""

    class_names = ("person",)

    def detect(self, frame):
        from pipeline.core.types import Detections

        return Detections.empty(self.class_names)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback where no GPU can run an engine")
def test_an_engine_that_runs_on_a_cpu_runtime_is_a_one_line_warning(inputs, tmp_path, capsys):
    from pipeline.app.cli import main
    from pipeline.model.checkpoint import load_refiner
    from pipeline.model.export import export_onnx
    from tests.pipeline.backends.test_open_backend import fake_engine

    model = load_refiner(inputs["refiner"])
    onnx = export_onnx(model, tmp_path / "built" / "refiner.onnx", max_batch=8)
    engine = fake_engine(onnx.with_suffix(".engine"), model)  # TensorRT would reject it; here no GPU can run any
    arguments = ["--source", str(inputs["short"]), "--detector", str(inputs["detections"]), "--refiner", str(engine)]
    assert main([*arguments, "--device", "cpu", "--output", str(tmp_path / "run")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    runtime = json.loads((tmp_path / "run" / "summary.json").read_text())["refiner"]["backend"]
    label = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}[runtime]  # auto: the faster on this CPU
    assert warnings == [f"warning: --refiner {engine} is a TensorRT engine, but TensorRT cannot run here (it needs a CUDA GPU "
                        f"and the engine's runtime); {label} ran the ONNX file built beside it, {onnx}, on cpu"]  # fmt: skip
def test_change_stats_are_running_totals_with_bounded_memory():
    import numpy as np

    from pipeline.app.summary import ChangeStats
    from pipeline.core.types import Detections, RefinedDetections, RefineStatus

    def moved(refined: list[float]) -> RefinedDetections:
        detections = Detections([[0, 0, 10, 10]], [0.9], [0], ("person",))
        return RefinedDetections(detections, np.array([refined]), (RefineStatus.REFINED,), np.array([[0.5, 0.6]]))

    stats = ChangeStats(keep=1)
    stats.add(moved([0, 0, 10, 20]))  # IoU 0.5, sides move 2.5 px on average
    stats.add(moved([1, 1, 11, 11]))  # IoU 81 / 119, 1 px
    summary = stats.summary()
    assert summary["changed"] == 2 and summary["iou_detector_vs_refined"] == {"mean": round((0.5 + 81 / 119) / 2, 4), "min": 0.5}
    assert summary["side_shift_px"] == {"mean": 1.75, "p95": 1.0, "max": 2.5}  # p95 over the kept (most recent) shifts
