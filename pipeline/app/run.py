"""Wire a run together: source -> detect -> crop -> refine -> write, outputs and summary.

Everything that can be checked before the first frame (paths, models, class mapping, output
folder) is checked first (`prepare`) and raises a BBRefinementError, so a bad argument never
leaves a half-made run folder. Each option is checked once: RunConfig checks what only the app
uses (counts, ranges, option pairs); the model file, the backend kind, the policy, min size and
iterations are checked by the library that takes them (ModelFile, open_backend, FrameRefiner).
Once frames flow, summary.json is written whatever happens: at the end, on the first stage
failure, and on Ctrl+C / SIGTERM. Many streams: pipeline.app.run_streams, on the same `prepare`.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from pipeline.app.report import ChangeStats
from pipeline.app.stages import Stage, StageFailure, StagePipeline
from pipeline.app.streams import DEFAULT_BATCH_TIMEOUT_MS
from pipeline.core.errors import BackendError, UsageError
from pipeline.core.types import Frame, FrameResult, RefinedDetections, RefineStatus
from pipeline.io.detectors import Detector, open_detector
from pipeline.io.sinks import AnnotatedVideoSink, JsonlSink, ProgressSink, Sink, WindowSink, display_available, write_summary
from pipeline.io.sources import FrameSource, open_source
from pipeline.model.defaults import default_detector, default_refiner, resolve_device
from pipeline.refine.policy import Policy, leaves_every_box_alone
from pipeline.refine.refiner import FrameRefiner, build_frame_refiner

DEVICES = ("cpu", "cuda")
STOP_GRACE_SECONDS = 2.0  # how long stages get to finish after a stop before we write and leave
EXIT_OK, EXIT_FAILED = 0, 1
DETECTIONS_FILE, VIDEO_FILE, SUMMARY_FILE = "detections.jsonl", "annotated.mp4", "summary.json"


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; the CLI's flags map one to one onto these fields."""

    source: str
    detector: Path | None = None
    refiner: Path | None = None
    backend: str = "auto"
    device: str | None = None  # None: CUDA when available, else CPU
    output: Path | None = None  # None: runs/<timestamp>/
    max_frames: int | None = None
    refine: bool = True
    min_size: float = 0.0
    workers: int = 2
    show: bool = False
    gpu_crops: bool | None = None  # None: on with CUDA when the backend takes device tensors
    imgsz: int = 640
    conf: float = 0.25
    coco_gt: Path | None = None
    policy: Policy | None = None  # None: the refiner's default (see pipeline.refine.policy.default_policy)
    flip_tta: bool = False
    iterations: int = 1
    queue_size: int = 4
    max_batch: int = 32
    progress: bool = True
    min_free_mb: float = 100.0  # refuse to start with less free space than this where outputs go
    more_sources: tuple[str, ...] = ()  # the streams after the first: a run of many streams (pipeline.app.run_streams)
    batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS  # many streams: a cycle closes this long after its first frame
    triton_url: str | None = None  # --backend triton: the server's gRPC HOST:PORT
    triton_model: str | None = None  # --backend triton: the served model (None: the refiner file's stem)

    def __post_init__(self) -> None:
        if self.device is not None and self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError("--max-frames must be at least 1")
        for name in ("workers", "queue_size", "max_batch", "imgsz"):  # iterations, min size: FrameRefiner checks
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.batch_timeout_ms < 0:
            raise UsageError("--batch-timeout-ms must be non-negative")
        if (self.backend == "triton") != (self.triton_url is not None):
            raise UsageError("--backend triton and --triton-url HOST:PORT go together; pass both or neither")


@dataclass(frozen=True)
class RunReport:
    exit_code: int
    summary: dict[str, Any]
    output_dir: Path
    failure: StageFailure | None  # the first stage exception, for --debug tracebacks


def run(config: RunConfig, detector: Detector | None = None, source: FrameSource | None = None) -> RunReport:
    """Run one stream; `detector` and `source` override config.detector and config.source (tests, the demo)."""
    source = source or open_source(config.source)  # first: a wrong source is the likeliest mistake
    config, output_dir, device, detector, refiner = prepare(config, detector)
    setup = {
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "source": {"description": source.description, "live": source.live, "fps": source.fps, "frame_count": source.frame_count},
        "detector": {
            "description": getattr(detector, "description", type(detector).__name__),
            "class_names": list(detector.class_names),
        },
        "refiner": _refiner_summary(config, refiner, device),
        "device": device,
        "outputs": {"detections": DETECTIONS_FILE, "video": VIDEO_FILE},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    sinks: list[Sink] = [JsonlSink(output_dir / DETECTIONS_FILE), AnnotatedVideoSink(output_dir / VIDEO_FILE, source.fps)]
    counts: Counter = Counter()
    changes = ChangeStats()
    pipeline = StagePipeline(
        islice(source, config.max_frames), _stages(detector, refiner, sinks, counts, changes), config.queue_size, live=source.live
    )
    sinks.extend(_optional_sinks(config, source, pipeline))
    started = time.perf_counter()
    signals = _run_until_done(pipeline, source)
    summary = {**setup, **_results(pipeline, signals, time.perf_counter() - started, counts)}
    summary["refinement_change"] = changes.summary()
    summary["source"].update(source.health())
    summary["frames"]["lost"] = source.frames_lost
    add_server_statistics(summary, refiner)
    summary["warnings"] = refiner_warnings(refiner)
    if source.ended_early:
        summary["warnings"].append(f"{source.description} stopped decoding after {pipeline.frames_read} of its "
                                   f"{source.frame_count} frames (truncated or corrupt); results cover the frames before")
    try:
        # A stage still stuck in a call may be using these; the process exit releases them instead.
        if not summary["unfinished_stages"]:
            _close_all([*sinks, *((refiner.cropper, refiner.backend) if refiner else ())])
    finally:
        write_summary(output_dir / SUMMARY_FILE, summary)
    return RunReport(summary["exit_code"], summary, output_dir, pipeline.failure)


def prepare(config: RunConfig, detector: Detector | None) -> tuple[RunConfig, Path, str, Detector, FrameRefiner | None]:
    """Everything a run of one or many streams does before frames flow, cheapest and likeliest failure first.

    Returns the config with the default refiner filled in, the output folder (checked, not made yet),
    the device, the detector (warmed up) and the FrameRefiner (None with refine off).
    """
    if config.refine and config.refiner is None:  # a missing default is reported before any output is created
        config = replace(config, refiner=default_refiner())
    output_dir = choose_output_dir(config.output)
    check_writable(output_dir, config.min_free_mb)
    device = resolve_device(config.device)
    detector = detector or _open_detector(config, device)
    refiner = _open_refiner(config, detector, device) if config.refine else None  # checks classes before loading
    if hasattr(detector, "warm_up"):
        detector.warm_up()  # seconds: after every check that can fail fast
    return config, output_dir, device, detector, refiner


def refiner_warnings(refiner: FrameRefiner | None) -> list[str]:
    """What a user should know about the refiner before trusting the run's boxes."""
    if refiner is None or not leaves_every_box_alone(refiner.policy, refiner.calibration):
        return []
    return [f"this refiner's calibration ({refiner.calibration.fitted_on or 'no record of what on'}) found that refining did not "
            f"pay, so the {refiner.policy} policy left every box alone; recalibrate it on this detector's boxes "
            "(python -m benchmarks calibrate --split train --write) or use --policy replace"]


def choose_output_dir(requested: Path | None) -> Path:
    """The requested folder if new or empty, else a fresh runs/<timestamp>[-n]/; never an old run."""
    if requested is not None:
        requested = Path(requested)
        if requested.exists() and (not requested.is_dir() or any(requested.iterdir())):
            raise UsageError(f"output {requested} already exists and is not empty; choose a new --output folder")
        return requested
    stem = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, suffix = stem, 1
    while candidate.exists():
        candidate, suffix = stem.with_name(f"{stem.name}-{suffix}"), suffix + 1
    return candidate


def check_writable(output_dir: Path, min_free_mb: float) -> None:
    """Fail before any work if the outputs cannot be written: no permission, not a folder, or a full disk."""
    ancestor = Path(output_dir).absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"output {output_dir} is inside {ancestor}, which is a file; choose another --output folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise UsageError(f"cannot write in {ancestor} ({error.strerror}); choose another --output folder") from None
    free_mb = shutil.disk_usage(ancestor).free / 2**20
    if free_mb < min_free_mb:
        raise UsageError(
            f"only {free_mb:.0f} MB free in {ancestor} (need {min_free_mb:.0f} MB); free some space or choose another --output folder"
        )


def _open_detector(config: RunConfig, device: str) -> Detector:
    path = config.detector or default_detector()
    return open_detector(path, imgsz=config.imgsz, conf=config.conf, device=device, coco_gt=config.coco_gt, warm_up=False)


def _open_refiner(config: RunConfig, detector: Detector, device: str) -> FrameRefiner:
    return build_frame_refiner(
        config.refiner, detector.class_names, backend=config.backend, device=device,
        max_batch=config.max_batch, min_size=config.min_size, policy=config.policy, flip_tta=config.flip_tta,
        iterations=config.iterations, workers=config.workers, queue_size=config.queue_size, gpu_crops=config.gpu_crops,
        triton_url=config.triton_url, triton_model=config.triton_model,
    )


def _optional_sinks(config: RunConfig, source: FrameSource, pipeline: StagePipeline) -> list[Sink]:
    sinks: list[Sink] = []
    if config.show:
        if display_available():
            sinks.append(WindowSink(pipeline.stop))
        else:
            print("warning: --show ignored: no display found (DISPLAY is not set)", file=sys.stderr, flush=True)
    if config.progress:
        total = source.frame_count
        if total is not None and config.max_frames is not None:
            total = min(total, config.max_frames)
        sinks.append(ProgressSink(total, lambda: pipeline.frames_dropped))
    return sinks


def _stages(
    detector: Detector, refiner: FrameRefiner | None, sinks: list[Sink], counts: Counter, changes: ChangeStats
) -> list[Stage]:
    def write(result: FrameResult) -> None:
        for sink in sinks:
            sink.write(result)
        counts.update(str(status) for status in result.objects.status)
        changes.add(result.objects)

    if refiner is None:

        def detect_only(frame: Frame) -> FrameResult:
            return FrameResult(frame, RefinedDetections.untouched(detector.detect(frame), RefineStatus.DISABLED))

        return [Stage("detect", detect_only), Stage("write", write)]

    return [
        Stage("detect", lambda frame: (frame, detector.detect(frame))),
        Stage("crop", lambda pair: refiner.prepare(*pair)),  # the job carries its frame on
        Stage("refine", lambda job: FrameResult(job.frame, refiner.finish(job))),
        Stage("write", write),
    ]


def _run_until_done(pipeline: StagePipeline, source: FrameSource) -> list[int]:
    """Run to the end, a failure or a signal; after a stop, stages get STOP_GRACE_SECONDS. Returns signals seen."""
    with _stop_on_signals(pipeline) as signals:
        pipeline.start()
        while not pipeline.wait(timeout=0.1):
            if pipeline.stop_event.is_set():
                source.interrupt()  # a reader waiting to reconnect must not outlive the run
                pipeline.wait(timeout=STOP_GRACE_SECONDS)
                break
    return signals


@contextmanager
def _stop_on_signals(pipeline: StagePipeline) -> Iterator[list[int]]:
    """SIGINT/SIGTERM stop the pipeline (instead of killing the process) while the run is on."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, _frame: object) -> None:
        received.append(signum)
        pipeline.stop()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _results(pipeline: StagePipeline, signals: list[int], elapsed: float, counts: Counter) -> dict[str, Any]:
    """The run's outcome for summary.json; a signal wins over a stage failure, which wins over success."""
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
        "fps": round(pipeline.frames_done / elapsed, 3) if elapsed > 0 else None,
        "frames": {"read": pipeline.frames_read, "processed": pipeline.frames_done, "dropped": pipeline.frames_dropped},
        "latency_ms": {name: recorder.summary() for name, recorder in pipeline.latency.items()},
        "queue_occupancy": {name: recorder.summary() for name, recorder in pipeline.queue_depth.items()},
        "objects": dict(counts),
        "unfinished_stages": pipeline.running_stages(),
    }


def _refiner_summary(config: RunConfig, refiner: FrameRefiner | None, device: str) -> dict[str, Any] | None:
    if refiner is None:
        return None
    return {
        "path": str(config.refiner),
        "backend": refiner.backend.name,
        "device": device,
        "spec": asdict(refiner.spec),
        "policy": refiner.policy,
        "min_size": refiner.min_size,
        "flip_tta": refiner.flip_tta,
        "iterations": refiner.iterations,
        "class_mapping": refiner.mapping.describe(),
        "cropper": type(refiner.cropper).__name__,
    }


def add_server_statistics(summary: dict[str, Any], refiner: FrameRefiner | None) -> None:
    """A served refiner's queue and compute time on the server (Triton), as summary["refiner"]["server"]."""
    statistics = getattr(refiner.backend if refiner else None, "server_statistics", None)
    if statistics is None:
        return
    try:
        summary["refiner"]["server"] = statistics()
    except BackendError as error:
        summary.setdefault("warnings", []).append(f"no server statistics: {error}")


def _close_all(resources: list[Any]) -> None:
    for resource in resources:
        resource.close()
