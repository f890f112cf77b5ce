"""summary.json layouts and the lines a run prints: one stream keeps its own layout, many add per-stream figures."""

from __future__ import annotations

from pipeline.app.run import run
from pipeline.app.summary import format_run_summary, output_files, video_names
from tests.pipeline.app.test_streams import CountedFrames, baseline

ONE_STREAM_KEYS = {
    "started_at", "source", "detector", "refiner", "device", "outputs", "status", "error", "exit_code", "elapsed_s", "fps",
    "frames", "latency_ms", "queue_occupancy", "objects", "refinement", "unfinished_stages", "refinement_change", "warnings",
}  # fmt: skip
MANY_STREAM_KEYS = ONE_STREAM_KEYS - {"source"} | {"streams", "refiner_calls", "batch_timeout_ms"}


def test_one_stream_writes_annotated_mp4_and_many_one_video_each():
    assert video_names(1) == ["annotated.mp4"]
    assert video_names(3) == ["annotated-0.mp4", "annotated-1.mp4", "annotated-2.mp4"]


def test_one_stream_keeps_the_single_stream_layout_and_the_report_has_both(inputs, tmp_path):
    report = run(baseline(inputs, tmp_path / "run"), sources=[CountedFrames(5)])
    summary = report.summary
    assert set(summary) == ONE_STREAM_KEYS and summary["outputs"] == {"detections": "detections.jsonl", "video": "annotated.mp4"}
    assert summary["frames"] == {"read": 5, "processed": 5, "dropped": 0, "lost": 0}
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
