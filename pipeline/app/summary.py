"""summary.json and the lines a run prints at its end: every figure a run reports, made in one place.

While frames flow, the write stage hands every result to a `RunTally` (objects per status, how far
refined boxes moved, how many streams shared each refiner call). When the run ends, `summarize`
joins what was set up, how the pipeline ended, what each stream did and the tally into one dict.
A new figure is counted in RunTally.add and reported in RunTally.summary; a new fact about the
models goes in `refiner_summary` or `setup_summary`.

One stream keeps the single-stream layout (`source`, no `stream` tags, `annotated.mp4`); many
streams report `streams` (per-stream frames, FPS, latency), cycles and `refiner_calls` (backend
calls per second, mean batch size, streams per call), with stage latencies per cycle.
"""

from __future__ import annotations

import math
import signal
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core.errors import BackendError
from pipeline.core.geometry import box_iou_pairs
from pipeline.core.types import FrameResult, RefinedDetections, RefineStatus
from pipeline.refine.policy import leaves_every_box_alone

if TYPE_CHECKING:  # the summary reads these; importing them at run time would load torch for --help
    from pipeline.app.stages import StagePipeline
    from pipeline.app.streams import StreamMux
    from pipeline.io.detectors import Detector
    from pipeline.refine.refiner import FrameRefiner

EXIT_OK, EXIT_FAILED = 0, 1
DETECTIONS_FILE, VIDEO_FILE, SUMMARY_FILE = "detections.jsonl", "annotated.mp4", "summary.json"
STAGE_ORDER = ("read", "detect", "crop", "refine", "write", "end_to_end")


def video_names(streams: int) -> list[str]:
    """The annotated videos of a run: annotated.mp4 for one stream, annotated-<i>.mp4 per stream for many."""
    return [VIDEO_FILE] if streams == 1 else [f"annotated-{index}.mp4" for index in range(streams)]


class ChangeStats:
    """Accumulates, over a run, how far refined boxes moved from the detector's (IoU and side shift in pixels).

    Running totals for counts, means and extremes, and the most recent `keep` shifts for the p95, so a
    camera running for days does not grow memory (the soak benchmark watches RSS).
    """

    def __init__(self, keep: int = 10_000) -> None:
        self._recent_shifts: deque[float] = deque(maxlen=keep)
        self._changed = 0
        self._iou_sum = self._shift_sum = 0.0
        self._iou_min, self._shift_max = math.inf, 0.0

    def add(self, objects: RefinedDetections) -> None:
        changed = objects.changed
        if not changed.any():
            return
        detector = objects.detections.boxes[changed].astype(np.float64)
        refined = objects.refined_boxes[changed]
        ious = box_iou_pairs(detector, refined)
        shifts = np.abs(refined - detector).mean(axis=1)
        self._changed += len(ious)
        self._iou_sum += float(ious.sum())
        self._shift_sum += float(shifts.sum())
        self._iou_min = min(self._iou_min, float(ious.min()))
        self._shift_max = max(self._shift_max, float(shifts.max()))
        self._recent_shifts.extend(shifts.tolist())

    def summary(self) -> dict[str, Any]:
        if not self._changed:
            return {"changed": 0}
        return {
            "changed": self._changed,
            "iou_detector_vs_refined": {"mean": round(self._iou_sum / self._changed, 4), "min": round(self._iou_min, 4)},
            "side_shift_px": {
                "mean": round(self._shift_sum / self._changed, 2),
                "p95": round(float(np.percentile(np.fromiter(self._recent_shifts, float), 95)), 2),
                "max": round(self._shift_max, 2),
            },
        }


class CycleCalls:
    """Per cycle whose frames had crops: how many frames and streams shared its one backend call."""

    def __init__(self) -> None:
        self.calls = 0
        self.streams = 0

    def add(self, crops_per_frame: list[int]) -> None:
        if sum(crops_per_frame):
            self.calls += 1
            self.streams += sum(1 for count in crops_per_frame if count)


@dataclass
class RunTally:
    """What the run counts as it goes: the write stage adds every result, the refine stage every cycle's call."""

    objects: Counter = field(default_factory=Counter)  # boxes per RefineStatus
    stream_objects: dict[int, Counter] = field(default_factory=dict)  # the same per stream
    changes: ChangeStats = field(default_factory=ChangeStats)
    cycle_calls: CycleCalls = field(default_factory=CycleCalls)

    def add(self, result: FrameResult) -> None:
        """Count one written frame's objects; called by the write stage only."""
        statuses = [str(status) for status in result.objects.status]
        self.objects.update(statuses)
        self.stream_objects.setdefault(result.stream, Counter()).update(statuses)
        self.changes.add(result.objects)

    def summary(self) -> dict[str, Any]:
        return {"objects": dict(self.objects), "refinement": refinement_counts(self.objects),
                "refinement_change": self.changes.summary()}


def refinement_counts(objects: Counter) -> dict[str, Any]:
    """Boxes sent to the network (refined, or kept by the policy after it) and skipped before it, by reason."""
    count = {status: objects.get(str(status), 0) for status in RefineStatus}
    return {
        "sent_to_network": count[RefineStatus.REFINED] + count[RefineStatus.GATED],
        "refined": count[RefineStatus.REFINED],
        "gated": count[RefineStatus.GATED],
        "skipped": {"gain": count[RefineStatus.SKIPPED_GAIN], "budget": count[RefineStatus.SKIPPED_BUDGET]},
    }


def setup_summary(detector: Detector, refiner: FrameRefiner | None, refiner_path: object, device: str) -> dict[str, Any]:
    """What the run was given, known before the first frame."""
    return {
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "detector": {
            "description": getattr(detector, "description", type(detector).__name__),
            "class_names": list(detector.class_names),
        },
        "refiner": refiner_summary(refiner, refiner_path, device),
        "device": device,
    }


def refiner_summary(refiner: FrameRefiner | None, path: object, device: str) -> dict[str, Any] | None:
    if refiner is None:
        return None
    return {
        "path": str(path),
        "backend": refiner.backend.name,
        "precision": refiner.backend.precision,
        "device": device,
        "spec": asdict(refiner.spec),
        "policy": refiner.policy,
        "profile": refiner.profile,
        "gate": refiner.gate is not None,
        "max_refine": refiner.max_refine,
        "min_size": refiner.min_size,
        "flip_tta": refiner.flip_tta,
        "iterations": refiner.iterations,
        "class_mapping": refiner.mapping.describe(),
        "cropper": type(refiner.cropper).__name__,
        "weights_check": weights_check(refiner.spec.weights_digest, Path(str(path)).suffix),
    }


def weights_check(digest: str, kind: str) -> str:
    """Whether the weights were checked against their digest at load (pipeline.model.checkpoint.check_digest)."""
    if not digest:
        return "no digest (saved before digests; seal it: python -m train.seal FILE)"
    if kind == ".safetensors":
        return "digest verified"
    return "not checked here (an ONNX file or engine carries its checkpoint's digest)"


def summarize(
    setup: dict[str, Any], pipeline: StagePipeline, mux: StreamMux, tally: RunTally, refiner: FrameRefiner | None,
    signals: list[int], started: float, elapsed: float, batch_timeout_ms: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """summary.json of a run (`started`: time.perf_counter() at its start), and the same in the many-stream layout.

    The second holds `streams`, cycles and `refiner_calls` for any number of streams (benchmarks compare
    one stream with many); for many streams both are the same dict.
    """
    streams = stream_summaries(mux, started)
    warnings = refiner_warnings(refiner, setup["refiner"]["path"] if refiner else None) + output_warnings(tally)
    for stream in streams:
        stream["refinement"] = refinement_counts(tally.stream_objects.get(stream["stream"], Counter()))
    summary = {**setup, **outcome(pipeline, signals, elapsed), **tally.summary(), "warnings": warnings}
    summary.update(_many_streams(streams, mux, refiner, tally.cycle_calls, elapsed, batch_timeout_ms))
    judge_streams(summary, mux)
    add_server_statistics(summary, refiner)
    return (_as_one_stream(summary, mux) if len(streams) == 1 else summary), summary


def outcome(pipeline: StagePipeline, signals: list[int], elapsed: float) -> dict[str, Any]:
    """How the run ended and its stage figures; a signal wins over a stage failure, which wins over success."""
    if signals:
        exit_code, status, error = 128 + signals[0], "interrupted", f"interrupted by {signal.Signals(signals[0]).name}"
    elif pipeline.failure is not None:
        exit_code, status, error = EXIT_FAILED, "failed", str(pipeline.failure)
    elif pipeline.stop_event.is_set():
        exit_code, status, error = EXIT_OK, "stopped", None  # the window's q key
    else:
        exit_code, status, error = EXIT_OK, "completed", None
    return {
        "status": status,
        "error": error,
        "exit_code": exit_code,
        "elapsed_s": round(elapsed, 3),
        "latency_ms": {name: recorder.summary() for name, recorder in pipeline.latency.items()},
        "queue_occupancy": {name: recorder.summary() for name, recorder in pipeline.queue_depth.items()},
        "unfinished_stages": pipeline.running_stages(),
    }


FRAME_COUNTS = ("read", "processed", "dropped", "unfinished", "lost", "unreadable")


def frame_accounting(read: int, processed: int, dropped: int, lost: int, unreadable: int) -> dict[str, int]:
    """A stream's frames: every frame read was processed (written), dropped (a live stream's full queue) or left
    unfinished (in flight when the run stopped), so read = processed + dropped + unfinished. Beside them, never
    read: `lost`, the frames a live stream sent while it was down (estimated), and `unreadable`, the images of
    a folder that did not decode."""
    return {"read": read, "processed": processed, "dropped": dropped, "unfinished": read - processed - dropped, "lost": lost,
            "unreadable": unreadable}


def stream_summaries(mux: StreamMux, started: float) -> list[dict[str, Any]]:
    """Per stream: its source, frames, FPS over its own span (a short clip is not diluted) and read -> written latency."""
    streams = []
    for index, (source, stats) in enumerate(zip(mux.sources, mux.stats, strict=True)):
        active = (stats.last_done_at - started) if stats.last_done_at is not None else 0.0
        streams.append({
            "stream": index,
            "source": source.description,
            "live": source.live,
            "source_fps": source.fps,
            "frame_count": source.frame_count,
            "frames": frame_accounting(stats.read, stats.done, stats.dropped, source.frames_lost, source.frames_unreadable),
            "fps": round(stats.done / active, 3) if active > 0 else None,
            "latency_ms": stats.latency.summary(),
            **source.health(),
            "error": None if stats.error is None else str(stats.error),
        })
    return streams


def _as_one_stream(summary: dict[str, Any], mux: StreamMux) -> dict[str, Any]:
    """The single-stream layout: `source` and its frames instead of `streams`; `read` is the source's
    decode time, `end_to_end` its read -> written latency (the stage latencies' view of the same frames)."""
    stream = summary["streams"][0]
    source = mux.sources[0]
    layout = {key: value for key, value in summary.items() if key not in ("batch_timeout_ms", "streams", "refiner_calls")}
    layout.update(
        source={"description": source.description, "live": source.live, "fps": source.fps,
                "frame_count": source.frame_count, **source.health()},  # fmt: skip
        frames=stream["frames"],
        latency_ms={**summary["latency_ms"], "read": mux.stats[0].decoding.summary(), "end_to_end": stream["latency_ms"]},
        outputs={"detections": DETECTIONS_FILE, "video": VIDEO_FILE},
    )
    return layout


def _many_streams(
    streams: list[dict[str, Any]], mux: StreamMux, refiner: FrameRefiner | None, cycle_calls: CycleCalls, elapsed: float,
    batch_timeout_ms: float,
) -> dict[str, Any]:
    """Many streams: each stream, totals over streams and how the refiner's calls were batched."""
    frames = {key: sum(stream["frames"][key] for stream in streams) for key in FRAME_COUNTS}
    return {
        "batch_timeout_ms": batch_timeout_ms,
        "outputs": {"detections": DETECTIONS_FILE, "videos": video_names(len(streams))},
        "streams": streams,
        "frames": {**frames, "cycles": mux.cycles},
        "fps": round(frames["processed"] / elapsed, 3) if elapsed > 0 else None,
        "refiner_calls": None if refiner is None else {
            "calls": refiner.backend_calls,
            "calls_per_s": round(refiner.backend_calls / elapsed, 3) if elapsed > 0 else None,
            "mean_batch_size": round(refiner.crops_refined / refiner.backend_calls, 3) if refiner.backend_calls else None,
            "cycle_calls": cycle_calls.calls,  # first passes: one per cycle with crops (iterations > 1 add per-frame calls)
            "mean_streams_per_call": round(cycle_calls.streams / cycle_calls.calls, 3) if cycle_calls.calls else None,
        },
    }


def stream_label(mux: StreamMux, index: int) -> str:
    """How warnings name a stream: its source alone in a run of one, "stream i (source)" among many."""
    description = mux.sources[index].description
    return description if len(mux.sources) == 1 else f"stream {index} ({description})"


def judge_streams(summary: dict[str, Any], mux: StreamMux) -> None:
    """Dead or truncated streams become warnings; the run fails only if every stream failed."""
    failed = [(index, stats.error) for index, stats in enumerate(mux.stats) if stats.error is not None]
    if len(mux.sources) > 1:  # one stream's failure is the run's error, below
        summary["warnings"] += [f"{stream_label(mux, index)} failed: {error}" for index, error in failed]
    summary["warnings"] += [
        f"{stream_label(mux, index)} {warning}"
        for index, (source, stats) in enumerate(zip(mux.sources, mux.stats, strict=True))
        for warning in source.warnings(stats.read)
    ]
    if failed and len(failed) == len(mux.stats) and summary["status"] == "completed":
        error = f"read stage failed: {failed[0][1]}" if len(failed) == 1 else f"every stream failed; stream 0: {failed[0][1]}"
        summary.update(status="failed", exit_code=EXIT_FAILED, error=error)


def refiner_warnings(refiner: FrameRefiner | None, path: object) -> list[str]:
    """What a user should know about the refiner before trusting the run's boxes (`path`: the --refiner file)."""
    if refiner is None:
        return []
    warnings = []
    if Path(str(path)).suffix.lower() == ".engine" and refiner.backend.name in ("onnxruntime", "openvino"):
        from pipeline.backends.registry import BACKENDS

        runtime = BACKENDS[refiner.backend.name].label
        warnings.append(
            f"--refiner {path} is a TensorRT engine, but TensorRT cannot run here (it needs a CUDA GPU and the engine's "
            f"runtime); {runtime} ran the ONNX file built beside it, {Path(str(path)).with_suffix('.onnx')}, on "
            f"{refiner.backend.device}"
        )
    if leaves_every_box_alone(refiner.policy, refiner.calibration):
        warnings.append(
            f"this refiner's calibration ({refiner.calibration.fitted_on or 'no record of what on'}) found that refining did "
            f"not pay, so the {refiner.policy} policy left every box alone; recalibrate it on this detector's boxes "
            "(python -m benchmarks calibrate --split train --write) or use --policy replace"
        )
    return warnings


def output_warnings(tally: RunTally) -> list[str]:
    """Boxes the refiner answered with NaN or infinity (status invalid): never silent, never counted as gated."""
    invalid = tally.objects.get(str(RefineStatus.INVALID), 0)
    if not invalid:
        return []
    return [f"the refiner returned NaN or infinity for {invalid} box(es), which kept the detector's box (status "
            "invalid); the model file may be damaged or overflow its precision: check it, or try another --backend"]


def add_server_statistics(summary: dict[str, Any], refiner: FrameRefiner | None) -> None:
    """A served refiner's queue and compute time on the server (Triton), as summary["refiner"]["server"]."""
    statistics = getattr(refiner.backend if refiner else None, "server_statistics", None)
    if statistics is None:
        return
    try:
        summary["refiner"]["server"] = statistics()
    except BackendError as error:
        summary["warnings"].append(f"no server statistics: {error}")


def format_run_summary(summary: dict[str, Any]) -> str:
    """Plain-text lines for the end of a run: frames, FPS, latency per stage, objects and box changes."""
    frames = summary.get("frames", {})
    fps = summary.get("fps")
    lines = [
        f"{frames.get('processed', 0)} frames in {summary.get('elapsed_s', 0):.1f} s: "
        + (f"{fps:.1f} FPS" if fps else "FPS n/a")
        + "".join(f", {frames[key]} {key}" for key in ("dropped", "unfinished", "lost", "unreadable") if frames.get(key)),
        f"latency per stage, ms   {'p50':>8} {'p95':>8}",
    ]
    latency = summary.get("latency_ms", {})
    for stage in sorted(latency, key=lambda name: (STAGE_ORDER.index(name) if name in STAGE_ORDER else 99, name)):
        values = latency[stage]
        lines.append(f"  {stage:<20} {_ms(values.get('p50_ms'))} {_ms(values.get('p95_ms'))}")
    objects = summary.get("objects", {})
    counts = ", ".join(f"{count} {status}" for status, count in sorted(objects.items(), key=lambda kv: -kv[1]))
    lines.append(f"boxes: {counts or 0}")
    if summary.get("refiner") and summary.get("refinement"):
        lines.append(format_refinement(summary["refinement"]))
    change = summary.get("refinement_change") or {}
    if change.get("changed"):
        lines.append(
            f"refined boxes moved {change['side_shift_px']['mean']:.1f} px per side on average "
            f"(p95 {change['side_shift_px']['p95']:.1f}, max {change['side_shift_px']['max']:.1f}); "
            f"IoU with the detector's box: mean {change['iou_detector_vs_refined']['mean']:.3f}, "
            f"min {change['iou_detector_vs_refined']['min']:.3f}"
        )
    server = (summary.get("refiner") or {}).get("server")
    if server and server.get("requests"):
        lines.append(
            f"triton {server['model']} at {server['url']}: {server['requests']} requests in {server['batches']} batches, "
            f"mean queue {server['queue_ms_mean']:.1f} ms, compute {server['compute_ms_mean']:.1f} ms per request"
        )
    if "streams" in summary:
        lines.append(format_streams(summary))
    return "\n".join(lines)


def format_refinement(refinement: dict[str, Any]) -> str:
    """One line: boxes sent to the refiner and skipped before it, and why."""
    skipped = refinement["skipped"]
    return (f"refiner: {refinement['sent_to_network']} boxes sent ({refinement['refined']} refined, {refinement['gated']} kept by "
            f"the policy), {skipped['gain']} skipped as not expected to gain, {skipped['budget']} over the --max-refine budget")


def format_streams(summary: dict[str, Any]) -> str:
    """Lines after a run of many streams: per stream frames, FPS, latency; the refiner's batching."""
    lines = [f"streams: {len(summary['streams'])}, cycles: {summary['frames']['cycles']}"]
    for stream in summary["streams"]:
        frames, latency = stream["frames"], stream["latency_ms"]
        lines.append(
            f"  stream {stream['stream']}: {frames['processed']} frames, {frames['dropped']} dropped, "
            f"{stream['fps'] or 0:.1f} FPS, latency p50 {latency['p50_ms'] or 0:.0f} ms, "
            f"{stream['refinement']['sent_to_network']} boxes sent to the refiner, "
            f"{sum(stream['refinement']['skipped'].values())} skipped  {stream['source']}"
        )
    calls = summary.get("refiner_calls")
    if calls and calls["calls"]:
        lines.append(
            f"refiner: {calls['calls']} calls ({calls['calls_per_s']:.1f}/s), {calls['mean_batch_size']:.1f} crops "
            f"and {calls['mean_streams_per_call']:.1f} streams per call"
        )
    return "\n".join(lines)


def output_files(summary: dict[str, Any]) -> str:
    """The run's files as the CLI names them: detections, the video(s), the summary."""
    outputs = summary["outputs"]
    videos = outputs.get("videos", [outputs.get("video")])
    video = videos[0] if len(videos) == 1 else f"{videos[0]} .. {videos[-1]}"
    return f"{outputs['detections']}, {video}, {SUMMARY_FILE}"


def _ms(value: float | None) -> str:
    return f"{value:8.1f}" if value is not None else f"{'-':>8}"
