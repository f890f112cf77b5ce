"""A run of many streams: sources -> cycles -> detect -> crop -> ONE refine call per cycle -> write.

One detector and one refiner serve every stream. pipeline.app.streams gathers a cycle (at most one
frame per stream); the crops of all its frames go through one batched backend call, which is what
makes N cameras cheaper than N pipelines. The single-stream run (pipeline.app.run) is untouched; this
reuses its checks, model loading and summary, and adds per-stream outputs:

- detections.jsonl: one line per frame, tagged `"stream": i` (i = the source's position, from 0);
- annotated-<i>.mp4: one annotated video per stream;
- summary.json: `streams` (frames, drops, FPS, latency per stream) and `refiner_calls` (backend
  calls per second, mean batch size, streams per call). Stage latencies there are per cycle.

A stream that ends early or dies (a live one after its reconnect tries) does not stop the others;
the run fails only when every stream failed.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pipeline.app.report import ChangeStats
from pipeline.core.types import Detections, FrameResult, RefinedDetections, RefineStatus
from pipeline.io.detectors import Detector
from pipeline.refine.refiner import BatchJob, FrameRefiner
from pipeline.app.run import (
    DETECTIONS_FILE,
    EXIT_FAILED,
    SUMMARY_FILE,
    RunConfig,
    RunReport,
    _close_all,
    _refiner_summary,
    _results,
    _run_until_done,
    add_server_statistics,
    prepare,
    refiner_warnings,
)
from pipeline.app.stages import Stage, StagePipeline
from pipeline.app.streams import StreamFrame, StreamMux
from pipeline.io.sinks import AnnotatedVideoSink, JsonlSink, ProgressSink, Sink, WindowSink, display_available, write_summary
from pipeline.io.sources import FrameSource, open_source


def video_name(stream: int) -> str:
    return f"annotated-{stream}.mp4"


class CycleCalls:
    """Per cycle whose frames had crops: how many frames and streams shared its one backend call."""

    def __init__(self) -> None:
        self.calls = 0
        self.streams = 0

    def add(self, crops_per_frame: list[int]) -> None:
        if sum(crops_per_frame):
            self.calls += 1
            self.streams += sum(1 for count in crops_per_frame if count)


def run_streams(config: RunConfig, detector: Detector | None = None, sources: Sequence[FrameSource] | None = None) -> RunReport:
    """Run every stream of `config` (source, then more_sources) through one detector and one refiner.

    `detector` and `sources` override the config's (tests, benchmarks).
    """
    sources = list(sources) if sources is not None else [open_source(text) for text in (config.source, *config.more_sources)]
    config, output_dir, device, detector, refiner = prepare(config, detector)
    mux = StreamMux(sources, config.batch_timeout_ms / 1000.0, config.queue_size, config.max_frames)
    setup = {
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "detector": {
            "description": getattr(detector, "description", type(detector).__name__),
            "class_names": list(detector.class_names),
        },
        "refiner": _refiner_summary(config, refiner, device),
        "device": device,
        "batch_timeout_ms": config.batch_timeout_ms,
        "outputs": {"detections": DETECTIONS_FILE, "videos": [video_name(i) for i in range(len(sources))]},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    jsonl = JsonlSink(output_dir / DETECTIONS_FILE)
    videos = [AnnotatedVideoSink(output_dir / video_name(i), source.fps) for i, source in enumerate(sources)]
    shared: list[Sink] = []  # progress: every stream's frames
    windows: list[Sink] = []  # --show: one window per stream
    counts: Counter = Counter()
    changes = ChangeStats()
    cycle_calls = CycleCalls()

    def write(results: list[tuple[StreamFrame, FrameResult]]) -> None:
        for item, result in results:
            jsonl.write(result, item.stream)
            videos[item.stream].write(result)
            for sink in (*shared, *windows[item.stream : item.stream + 1]):
                sink.write(result)
            counts.update(str(status) for status in result.objects.status)
            changes.add(result.objects)
            mux.stats[item.stream].written(item)

    pipeline = StagePipeline(mux, _stages(detector, refiner, cycle_calls, write), config.queue_size)
    shared.extend(_progress(config, mux))
    windows.extend(_windows(config, pipeline, len(sources)))
    started = time.perf_counter()
    signals = _run_until_done(pipeline, mux)  # type: ignore[arg-type]  # StreamMux interrupts like a source
    elapsed = time.perf_counter() - started
    summary = {**setup, **_results(pipeline, signals, elapsed, counts)}
    summary["refinement_change"] = changes.summary()
    summary["warnings"] = refiner_warnings(refiner)
    summary.update(_stream_results(mux, started, elapsed, refiner, cycle_calls))
    _judge_streams(summary, mux)
    add_server_statistics(summary, refiner)
    try:
        if not summary["unfinished_stages"]:
            _close_all([jsonl, *videos, *shared, *windows, *((refiner.cropper, refiner.backend) if refiner else ())])
    finally:
        write_summary(output_dir / SUMMARY_FILE, summary)
    return RunReport(summary["exit_code"], summary, output_dir, pipeline.failure)


def _stages(
    detector: Detector, refiner: FrameRefiner | None, cycle_calls: CycleCalls, write: Callable[[Any], None]
) -> list[Stage]:
    """Stages over cycles (lists of StreamFrames): one detect call (where batched) and one refine call per cycle."""
    if refiner is None:

        def detect_only(cycle: list[StreamFrame]) -> list[tuple[StreamFrame, FrameResult]]:
            return [
                (item, FrameResult(item.frame, RefinedDetections.untouched(detections, RefineStatus.DISABLED)))
                for item, detections in detect_cycle(detector, cycle)
            ]

        return [Stage("detect", detect_only), Stage("write", write)]

    def crop(pairs: list[tuple[StreamFrame, Detections]]) -> tuple[list[StreamFrame], BatchJob]:
        return [item for item, _ in pairs], refiner.prepare_many([(item.frame, detections) for item, detections in pairs])

    def refine(prepared: tuple[list[StreamFrame], BatchJob]) -> list[tuple[StreamFrame, FrameResult]]:
        items, batch = prepared
        cycle_calls.add([len(job.vectors) for job in batch.jobs])
        return [(item, FrameResult(item.frame, objects)) for item, objects in zip(items, refiner.finish_many(batch), strict=True)]

    return [
        Stage("detect", lambda cycle: detect_cycle(detector, cycle)),
        Stage("crop", crop),
        Stage("refine", refine),
        Stage("write", write),
    ]


def detect_cycle(detector: Detector, cycle: list[StreamFrame]) -> list[tuple[StreamFrame, Detections]]:
    """A cycle's detections: one batched call where the detector has one (Ultralytics), else frame by frame."""
    detect_many = getattr(detector, "detect_many", None)
    if detect_many is None or len(cycle) == 1:
        return [(item, detector.detect(item.frame)) for item in cycle]
    return list(zip(cycle, detect_many([item.frame for item in cycle]), strict=True))


def _progress(config: RunConfig, mux: StreamMux) -> list[Sink]:
    if not config.progress:
        return []
    lengths = [source.frame_count for source in mux.sources]
    total = None
    if all(length is not None for length in lengths):
        total = sum(length if config.max_frames is None else min(length, config.max_frames) for length in lengths)
    return [ProgressSink(total, lambda: sum(stats.dropped for stats in mux.stats))]


def _windows(config: RunConfig, pipeline: StagePipeline, count: int) -> list[Sink]:
    if not config.show:
        return []
    if not display_available():
        print("warning: --show ignored: no display found (DISPLAY is not set)", file=sys.stderr, flush=True)
        return []
    return [WindowSink(pipeline.stop, f"BBRefinement-RT stream {stream}") for stream in range(count)]


def _stream_results(
    mux: StreamMux, started: float, elapsed: float, refiner: FrameRefiner | None, cycle_calls: CycleCalls
) -> dict[str, Any]:
    """Per-stream figures, totals over streams (frames, FPS) and how the refiner's calls were batched."""
    streams = []
    for index, (source, stats) in enumerate(zip(mux.sources, mux.stats, strict=True)):
        active = (stats.last_done_at - started) if stats.last_done_at is not None else 0.0
        streams.append({
            "stream": index,
            "source": source.description,
            "live": source.live,
            "source_fps": source.fps,
            "frame_count": source.frame_count,
            "frames": {"read": stats.read, "processed": stats.done, "dropped": stats.dropped, "lost": source.frames_lost},
            "fps": round(stats.done / active, 3) if active > 0 else None,  # over its own span: a short clip is not diluted
            "latency_ms": stats.latency.summary(),  # read by its reader -> written
            **source.health(),
            "error": stats.error,
        })
    done = sum(stats.done for stats in mux.stats)
    frames = {key: sum(stream["frames"][key] for stream in streams) for key in ("read", "processed", "dropped", "lost")}
    return {
        "streams": streams,
        "frames": {**frames, "cycles": mux.cycles},
        "fps": round(done / elapsed, 3) if elapsed > 0 else None,
        "refiner_calls": None if refiner is None else {
            "calls": refiner.backend_calls,
            "calls_per_s": round(refiner.backend_calls / elapsed, 3) if elapsed > 0 else None,
            "mean_batch_size": round(refiner.crops_refined / refiner.backend_calls, 3) if refiner.backend_calls else None,
            "cycle_calls": cycle_calls.calls,  # first passes: one per cycle with crops (iterations > 1 add per-frame calls)
            "mean_streams_per_call": round(cycle_calls.streams / cycle_calls.calls, 3) if cycle_calls.calls else None,
        },
    }


def _judge_streams(summary: dict[str, Any], mux: StreamMux) -> None:
    """Dead or truncated streams become warnings; the run fails only if every stream failed."""
    failed = [(index, stats.error) for index, stats in enumerate(mux.stats) if stats.error]
    warnings = [f"stream {index} ({mux.sources[index].description}) failed: {error}" for index, error in failed]
    warnings += [
        f"stream {index} ({source.description}) stopped decoding after {stats.read} of its {source.frame_count} frames "
        "(truncated or corrupt); results cover the frames before"
        for index, (source, stats) in enumerate(zip(mux.sources, mux.stats, strict=True)) if source.ended_early
    ]
    summary["warnings"] += warnings
    if len(failed) == len(mux.stats) and summary["status"] == "completed":
        summary.update(status="failed", exit_code=EXIT_FAILED, error=f"every stream failed; stream 0: {failed[0][1]}")


def format_streams(summary: dict[str, Any]) -> str:
    """Lines for the CLI after a run of many streams: per stream frames, FPS, latency; the refiner's batching."""
    lines = [f"streams: {len(summary['streams'])}, cycles: {summary['frames']['cycles']}"]
    for stream in summary["streams"]:
        frames, latency = stream["frames"], stream["latency_ms"]
        lines.append(
            f"  stream {stream['stream']}: {frames['processed']} frames, {frames['dropped']} dropped, "
            f"{stream['fps'] or 0:.1f} FPS, latency p50 {latency['p50_ms'] or 0:.0f} ms  {stream['source']}"
        )
    calls = summary.get("refiner_calls")
    if calls and calls["calls"]:
        lines.append(
            f"refiner: {calls['calls']} calls ({calls['calls_per_s']:.1f}/s), {calls['mean_batch_size']:.1f} crops "
            f"and {calls['mean_streams_per_call']:.1f} streams per call"
        )
    return "\n".join(lines)
