"""`python -m pipeline --source SRC ...`: detect and refine boxes on a video, camera, stream or folder.

Results (the run's figures, where its outputs are) go to stdout; progress, warnings and errors to
stderr, so `python -m pipeline ... > results.txt` keeps the results. Errors are one line on stderr ("error: what went wrong; what to do") with exit code 2 for bad
arguments or inputs, 1 for failures while running, 128 + signal number when interrupted
(130 Ctrl+C, 143 SIGTERM). --debug adds the traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from dataclasses import fields
from typing import Any

from pipeline.app.run import DEVICES, RunConfig, run
from pipeline.backends.base import CPU_PRECISIONS
from pipeline.app.summary import format_run_summary, output_files
from pipeline.backends import KINDS
from pipeline.core.errors import BBRefinementError, UsageError
from pipeline.refine.policy import POLICIES

EXIT_USAGE, EXIT_FAILED = 2, 1
DEMO_SOURCES = ("demo", "synthetic")
# Options that are RunConfig fields under the same name; their defaults live in RunConfig only.
RUN_OPTIONS = frozenset(field.name for field in fields(RunConfig)) - {"source", "more_sources", "refine"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Detect objects and refine their boxes on a video, camera, stream or image folder.",
        epilog="exit codes: 0 done, 1 failed while running, 2 bad arguments or inputs, 130 Ctrl+C, 143 SIGTERM",
    )
    parser.add_argument(
        "--source", action="append",
        help="video file, camera index (0), rtsp/http URL, image folder; 'demo' (the bundled real clip, contact sheet) "
        "or 'synthetic' (generated clip scored against exact ground truth); repeat it for many streams "
        "(required, or --sources; no default)",
    )
    parser.add_argument(
        "--sources", type=Path, metavar="FILE",
        help="a text file of sources, one per line (blank lines and # comments skipped), added after any --source "
        "(default: none)",
    )
    parser.add_argument(
        "--batch-timeout-ms", type=float,
        help="many streams: a cycle of frames goes to the refiner when every stream has one, or this long after "
        f"its first frame (default: {RunConfig.batch_timeout_ms:g})",
    )
    parser.add_argument(
        "--detector", type=Path,
        help="YOLO model (.pt/.onnx/.engine) or saved detections (COCO results .json, MOT det.txt) "
        "(default: the committed COCO YOLOv8n, models/yolov8n-coco.pt)",
    )
    parser.add_argument(
        "--refiner", type=Path,
        help="refiner model, .safetensors, .onnx or .engine (default: the committed engines/refiner-person-*.safetensors)",
    )
    parser.add_argument(
        "--backend", choices=KINDS,
        help="refiner runtime (default: auto = TensorRT with an engine and a GPU, else ONNX Runtime, else torch; "
        "triton: a Triton server, see --triton-url)",
    )
    parser.add_argument(
        "--triton-url", metavar="HOST:PORT",
        help="--backend triton: the server's gRPC address; it must serve the --refiner's spec (default: none)",
    )
    parser.add_argument(
        "--triton-model", metavar="NAME",
        help="--backend triton: the served model (default: the --refiner file's name without suffix, as build_engine.py "
        "--triton-repo names it)",
    )
    parser.add_argument(
        "--triton-timeout-s", type=float, metavar="SECONDS",
        help="--backend triton: the deadline of one batch; a hung server is an error after it (default: 5)",
    )
    parser.add_argument("--device", choices=DEVICES, help="where models run (default: cuda when available, else cpu)")
    parser.add_argument("--output", type=Path, help="new or empty folder for the results (default: runs/<timestamp>/)")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames (default: the whole source; demo: 300)")
    parser.add_argument("--no-refine", action="store_true", help="detector boxes only, a baseline run (default: off)")
    parser.add_argument(
        "--min-size", type=float, help="refine only boxes at least this many pixels wide and high (default: 0)"
    )
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        help="replace: always use refined boxes; gate: only where the predicted IoU improves; blend: mix the two boxes "
        "by the predicted gain (default: blend for refiners that predict IoU, else replace)",
    )
    parser.add_argument(
        "--profile", help="calibration profile of the refiner file to use (default: the detector's own, e.g. yolov8n for "
        "models/yolov8n-coco.pt; generic for detection files and detectors without one)",
    )
    parser.add_argument(
        "--precision", choices=CPU_PRECISIONS, help="OpenVINO's float precision on the CPU (default: bf16 where the CPU has it, "
        "else fp32; held-out AP within 0.04 below / 0.16 above fp32, docs/results.md)",
    )
    parser.add_argument(
        "--max-refine", type=int, help="refine at most N boxes a frame, those with the highest expected gain (default: all)"
    )
    parser.add_argument(
        "--flip-tta", action="store_true", help="also refine the mirrored crop and average, 2x refiner work (default: off)"
    )
    parser.add_argument(
        "--iterations", type=int, help="refine the refined box again, this many passes in all (default: 1)"
    )
    parser.add_argument(
        "--track", action="store_true",
        help="track ids per stream (ByteTrack on the output boxes) in detections.jsonl and the video labels (default: off)",
    )
    parser.add_argument(
        "--smooth", action="store_true", help="with --track: smooth box sides along tracks, for still boxes (default: off)"
    )
    parser.add_argument(
        "--reuse", action="store_true",
        help="with --track: a box that barely moved reuses its last refinement instead of the network (default: off)",
    )
    parser.add_argument("--workers", type=int, help=f"CPU crop threads (default: {RunConfig.workers})")
    parser.add_argument(
        "--gpu-crops",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="crop on the device with torch (default: on with CUDA when the backend takes device tensors)",
    )
    parser.add_argument("--imgsz", type=int, help="detector input size in pixels (default: 640; synthetic demo: 320)")
    parser.add_argument("--conf", type=float, help="detector confidence threshold (default: 0.25; synthetic demo: 0.1)")
    parser.add_argument(
        "--coco-gt", type=Path,
        help="COCO ground truth json giving class names and image ids for a COCO results --detector (default: none)",
    )
    parser.add_argument("--queue-size", type=int, help=f"frames buffered between stages (default: {RunConfig.queue_size})")
    parser.add_argument(
        "--min-free-mb", type=float, help="refuse to start with less free disk space for the outputs (default: 100)"
    )
    parser.add_argument("--show", action="store_true", help="show annotated frames in a window, q stops (default: off)")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of errors (default: off)")
    return parser


def config_from_args(args: argparse.Namespace, sources: Sequence[str], defaults: dict[str, Any] | None = None) -> RunConfig:
    """`sources`: every stream, as all_sources read them (one: the single-stream run as before).

    Options left unset take `defaults` (the demos' own), then RunConfig's: one place for each default.
    """
    first, *more = sources
    given = {name: value for name, value in vars(args).items() if name in RUN_OPTIONS and value is not None}
    return RunConfig(source=first, more_sources=tuple(more), refine=not args.no_refine, **{**(defaults or {}), **given})


def all_sources(args: argparse.Namespace) -> list[str]:
    """--source values, then the lines of --sources FILE; a UsageError when there are none."""
    sources = list(args.source or [])
    if args.sources is not None:
        try:
            lines = Path(args.sources).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            message = f"cannot read --sources {args.sources} ({error.strerror}); pass a text file, one source per line"
            raise UsageError(message) from None
        sources += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not sources:
        raise UsageError("no source given; pass --source SRC (repeat it for many streams) or --sources FILE")
    if len(sources) > 1 and set(DEMO_SOURCES) & set(sources):
        raise UsageError("the demo and synthetic sources run alone; pass one --source for them")
    return sources


class Interrupted(BaseException):
    """SIGINT or SIGTERM before the run's own handler is installed (models loading): not an Exception, so no
    `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _interrupt_on_signals() -> Iterator[None]:
    """Until the run installs its own handlers (and after it restores ours), SIGINT and SIGTERM raise Interrupted:
    both end with the same one line, instead of a KeyboardInterrupt for one and a silent death for the other."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _interrupt_on_signals():
            sources = all_sources(args)
            if sources[0] in DEMO_SOURCES:
                from pipeline.app import demo

                return demo.run_demo(config_from_args(args, sources, demo.DEFAULTS[sources[0]]))
            report = run(config_from_args(args, sources))
    except (Interrupted, KeyboardInterrupt) as interrupt:  # while models load, before the run's own handler
        signum = interrupt.signum if isinstance(interrupt, Interrupted) else signal.SIGINT
        print(f"error: interrupted by {signal.Signals(signum).name} before the run started", file=sys.stderr)
        return 128 + signum
    except Exception as error:  # every failure becomes one line and an exit code
        return _fail(error, args.debug)
    print(format_run_summary(report.summary))  # results on stdout; warnings and errors on stderr
    print(f"outputs: {report.output_dir}/ ({output_files(report.summary)})")
    if report.exit_code:
        if args.debug and report.failure is not None:
            traceback.print_exception(report.failure.error)
        print(f"error: {_first_line(report.summary['error'])}; finished frames are in {report.output_dir}", file=sys.stderr)
    else:
        for warning in report.summary.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
    return report.exit_code


def _fail(error: BaseException, debug: bool) -> int:
    """Report an error that stopped the run before frames flowed; our own errors already say what to do."""
    if debug:
        traceback.print_exception(error)
    if isinstance(error, BBRefinementError):  # ours: the message says what to do
        print(f"error: {_first_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    hint = "" if debug else "; rerun with --debug for the traceback"
    print(f"error: {type(error).__name__}: {_first_line(str(error))}{hint}", file=sys.stderr)
    return EXIT_FAILED


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "unknown error"
