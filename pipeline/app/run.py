"""One run of one or many streams: sources -> cycles -> detect -> crop -> refine -> write, and its summary.

Every run goes through a StreamMux (pipeline.app.streams); one stream is a mux of one. One detector
and one refiner serve every stream, and each cycle's crops go through one batched backend call,
which is what makes N cameras cheaper than N pipelines. A stream that ends early or dies does not
stop the others; the run fails when every stream failed.

Everything that can be checked before the first frame (paths, models, class mapping, output
folder) is checked first (`prepare`) and raises a BBRefinementError, so a bad argument never
leaves a half-made run folder. Each option is checked once: RunConfig checks what only the app
uses (counts, ranges, option pairs); the model file, the backend kind, the policy, min size and
iterations are checked by the library that takes them (ModelFile, open_backend, FrameRefiner).
Once frames flow, summary.json (pipeline.app.summary) is written whatever happens: at the end, on
the first stage failure, and on Ctrl+C / SIGTERM. Outputs: pipeline.app.outputs.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.app.outputs import check_writable, choose_output_dir, file_reports, file_sinks, progress_sink, window_sink
from pipeline.app.stages import Stage, StageFailure, StagePipeline
from pipeline.app.streams import DEFAULT_BATCH_TIMEOUT_MS, StreamFrame, StreamMux
from pipeline.app.summary import SUMMARY_FILE, RunTally, setup_summary, summarize
from pipeline.core.errors import UsageError
from pipeline.core.types import Detections, FrameResult, RefinedDetections, RefineStatus
from pipeline.io.detectors import Detector, open_detector
from pipeline.io.sinks import write_summary
from pipeline.io.sources import FrameSource, open_source
from pipeline.model.defaults import default_detector, default_refiner, resolve_device
from pipeline.refine.policy import Policy
from pipeline.refine.refiner import BatchJob, FrameRefiner, build_frame_refiner
from pipeline.track.reuse import ReusePlan
from pipeline.track.stream import StreamTracks, TrackOptions

DEVICES = ("cpu", "cuda")
STOP_GRACE_SECONDS = 2.0  # how long stages get to finish after a stop before we write and leave


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
    profile: str | None = None  # the refiner's calibration profile; None: the detector's (pipeline.refine.policy.choose_profile)
    max_refine: int | None = None  # boxes refined per frame at most, highest expected gain first; None: no budget
    precision: str | None = None  # a CPU runtime's float precision (OpenVINO): None, BF16 where the CPU has it; "fp32"
    flip_tta: bool = False
    iterations: int = 1
    queue_size: int = 4
    max_batch: int = 32
    progress: bool = True
    min_free_mb: float = 100.0  # refuse to start with less free space than this where outputs go
    more_sources: tuple[str, ...] = ()  # the streams after the first: a run of many streams
    batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS  # many streams: a cycle closes this long after its first frame
    triton_url: str | None = None  # --backend triton: the server's gRPC HOST:PORT
    triton_model: str | None = None  # --backend triton: the served model (None: the refiner file's stem)
    track: bool = False  # track ids per stream (pipeline.track); smooth, reuse: along the tracks
    smooth: bool = False
    reuse: bool = False
    triton_timeout_s: float | None = None  # --backend triton: one batch's deadline (None: the client's default)

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
        if (self.smooth or self.reuse) and not self.track:
            raise UsageError("--smooth and --reuse work along tracks; add --track")
        if (self.backend == "triton") != (self.triton_url is not None):
            raise UsageError("--backend triton and --triton-url HOST:PORT go together; pass both or neither")

    @property
    def sources(self) -> tuple[str, ...]:
        """Every stream's source text, the first one first."""
        return (self.source, *self.more_sources)


@dataclass(frozen=True)
class RunReport:
    exit_code: int
    summary: dict[str, Any]  # as written to summary.json
    output_dir: Path
    failure: StageFailure | None  # the first stage exception (or the one stream's), for --debug tracebacks
    streams_summary: dict[str, Any]  # the summary in the many-stream layout, for one stream too (benchmarks)


def run(config: RunConfig, sources: Sequence[FrameSource] | None = None, detector: Detector | None = None) -> RunReport:
    """Run every stream of `config` through one detector and one refiner.

    `sources` and `detector` override config.sources and config.detector (tests, benchmarks, the demo).
    """
    # Sources first: a wrong source is the likeliest mistake.
    sources = list(sources) if sources is not None else [open_source(text) for text in config.sources]
    config, output_dir, device, detector, refiner = prepare(config, detector)
    mux = StreamMux(sources, config.batch_timeout_ms / 1000.0, config.queue_size, config.max_frames)
    setup = setup_summary(detector, refiner, config.refiner, device)
    sinks = file_sinks(output_dir, sources)
    written_files = file_reports(sinks)  # read at the end: frames each file holds, and the error that stopped it
    tally = RunTally()

    def write(cycle: list[tuple[StreamFrame, FrameResult]]) -> None:
        for item, result in cycle:
            for sink in sinks:
                sink.write(result)
            tally.add(result)
            mux.written(item)

    tracks = [StreamTracks(TrackOptions.of(config.smooth, config.reuse)) for _ in sources] if config.track else None
    pipeline = StagePipeline(mux, cycle_stages(detector, refiner, tally, write, tracks), config.queue_size, read_ahead=1)
    if config.show and (window := window_sink(len(sources), pipeline.stop)) is not None:
        sinks.append(window)
    if config.progress:
        sinks.append(progress_sink(sources, config.max_frames, mux.frames_dropped))
    started = time.perf_counter()
    signals = _run_until_done(pipeline, mux)
    summary, streams_summary = summarize(
        setup, pipeline, mux, tally, refiner, signals, started, time.perf_counter() - started, config.batch_timeout_ms
    )
    if tracks is not None:  # ids are per stream: a count per stream
        streams_summary["tracks"] = [stream.summary() for stream in tracks]
        summary["tracks"] = streams_summary["tracks"][0] if len(tracks) == 1 else streams_summary["tracks"]
    try:
        # A stage still stuck in a call may be using these; the process exit releases them instead. Only the
        # write stage uses the sinks: they are closed (the videos finished, playable) unless it is the stuck one.
        unfinished = summary["unfinished_stages"]
        _close_all([*(sinks if "write" not in unfinished else ()),
                    *((refiner.cropper, refiner.backend) if refiner and not unfinished else ())])  # fmt: skip
    finally:
        summary["files"] = streams_summary["files"] = written_files()
        write_summary(output_dir / SUMMARY_FILE, summary)
    return RunReport(summary["exit_code"], summary, output_dir, _failure(pipeline, mux, summary), streams_summary)


def prepare(config: RunConfig, detector: Detector | None) -> tuple[RunConfig, Path, str, Detector, FrameRefiner | None]:
    """Everything a run does before frames flow, cheapest and likeliest failure first.

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


def _open_detector(config: RunConfig, device: str) -> Detector:
    path = config.detector or default_detector()
    return open_detector(path, imgsz=config.imgsz, conf=config.conf, device=device, coco_gt=config.coco_gt, warm_up=False)


def _open_refiner(config: RunConfig, detector: Detector, device: str) -> FrameRefiner:
    return build_frame_refiner(
        config.refiner, detector.class_names, backend=config.backend, device=device,
        max_batch=config.max_batch, min_size=config.min_size, policy=config.policy, flip_tta=config.flip_tta,
        iterations=config.iterations, workers=config.workers, queue_size=config.queue_size, gpu_crops=config.gpu_crops,
        triton_url=config.triton_url, triton_model=config.triton_model, triton_timeout_s=config.triton_timeout_s,
        profile=config.profile, detector_profile=detector.profile, max_refine=config.max_refine, precision=config.precision,
    )


Written = list[tuple[StreamFrame, FrameResult]]  # a cycle's results, each with the frame it came from


def cycle_stages(
    detector: Detector, refiner: FrameRefiner | None, tally: RunTally, write: Callable[[Written], None],
    tracks: list[StreamTracks] | None = None,
) -> list[Stage]:
    """Stages over cycles (lists of StreamFrames): one detect call (where batched) and one refine call per cycle.

    `tracks` (--track): one StreamTracks per stream; it decides which boxes are cropped (reuse) and
    attaches each result's tracks."""

    def tracked(item: StreamFrame, result: FrameResult, plan: ReusePlan | None = None) -> tuple[StreamFrame, FrameResult]:
        return item, (result if tracks is None else tracks[item.stream].follow(result, plan))

    if refiner is None:

        def detect_only(cycle: list[StreamFrame]) -> Written:
            untouched = [(item, RefinedDetections.untouched(detections, RefineStatus.DISABLED))
                         for item, detections in detect_cycle(detector, cycle)]
            return [tracked(item, FrameResult(item.frame, objects, item.stream)) for item, objects in untouched]

        return [Stage("detect", detect_only), Stage("write", write)]

    def crop(pairs: list[tuple[StreamFrame, Detections]]) -> tuple[list[StreamFrame], list[ReusePlan | None], BatchJob]:
        plans = [None if tracks is None else tracks[item.stream].plan(detections) for item, detections in pairs]
        frames = [(item.frame, detections, None if plan is None else plan.refine)
                  for (item, detections), plan in zip(pairs, plans, strict=True)]
        return [item for item, _ in pairs], plans, refiner.prepare_many(frames)

    def refine(prepared: tuple[list[StreamFrame], list[ReusePlan | None], BatchJob]) -> Written:
        items, plans, batch = prepared
        tally.cycle_calls.add([len(job.vectors) for job in batch.jobs])
        objects = refiner.finish_many(batch)
        results = zip(items, plans, objects, strict=True)
        return [tracked(item, FrameResult(item.frame, result, item.stream), plan) for item, plan, result in results]

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


def _run_until_done(pipeline: StagePipeline, mux: StreamMux) -> list[int]:
    """Run to the end, a failure or a signal; after a stop, stages get STOP_GRACE_SECONDS. Returns signals seen."""
    with _stop_on_signals(pipeline) as signals:
        pipeline.start()
        while not pipeline.wait(timeout=0.1):
            if pipeline.stop_event.is_set():
                mux.interrupt()  # a reader waiting to reconnect must not outlive the run
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


def _failure(pipeline: StagePipeline, mux: StreamMux, summary: dict[str, Any]) -> StageFailure | None:
    """The exception behind a failed run: a stage's, or the one stream's whose failure failed the run."""
    if pipeline.failure is not None or summary["status"] != "failed" or len(mux.stats) != 1:
        return pipeline.failure
    return StageFailure("read", mux.stats[0].error) if mux.stats[0].error is not None else None


def _close_all(resources: list[Any]) -> None:
    for resource in resources:
        resource.close()
