"""End-to-end FPS of the threaded pipeline with and without refinement, and of the bare detector.

Both pipeline runs go through pipeline.app.run with the same detector object and source, so their
difference is what refinement costs a real run: with stages overlapping in threads, the added
time per frame can be far below the refinement latency itself. The bare detector (one call after
another, no pipeline) shows how much of the frame time is detection.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

from benchmarks.report import environment, markdown_table, write_report
from pipeline.app.run import RunConfig, run
from pipeline.backends import KINDS
from pipeline.core.errors import DefaultModelError
from pipeline.io.detectors import Detector, open_detector
from pipeline.io.sources import open_source
from pipeline.model.defaults import default_detector, default_refiner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="video file, image folder or stream")
    parser.add_argument("--detector", type=Path, default=None, help="YOLO model or detections file (default: the app's, models/)")
    parser.add_argument("--refiner", type=Path, default=None, help="default: the app's, engines/refiner-person-*.safetensors")
    parser.add_argument("--backend", choices=KINDS, default="auto")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames (default: the whole source)")
    parser.add_argument("--workers", type=int, default=2, help="crop pool threads")
    parser.add_argument("--out", type=Path, default=None, help="report JSON (a .md is written beside it)")


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    try:  # the app's defaults, so the benchmark measures what `python -m pipeline` runs
        refiner = args.refiner or default_refiner()
        args.detector = args.detector or default_detector()
    except DefaultModelError as error:
        raise SystemExit(str(error)) from None
    if not Path(args.detector).is_file():
        raise SystemExit(f"detector {args.detector} does not exist; pass --detector")
    detector = open_detector(args.detector, device=args.device)
    bare_fps = detector_fps(detector, args.source, args.frames)  # also warms the detector up for both runs
    with tempfile.TemporaryDirectory(prefix="bench-fps-") as scratch:
        runs = {
            label: run(
                RunConfig(
                    source=args.source,
                    detector=args.detector,
                    refiner=refiner if refine else None,
                    refine=refine,
                    backend=args.backend,
                    device=args.device,
                    output=Path(scratch) / label,
                    max_frames=args.frames,
                    workers=args.workers,
                    progress=False,
                ),
                detector=detector,
            ).summary
            for label, refine in (("detect_only", False), ("refined", True))
        }
    results = fps_results(runs, bare_fps, refiner)
    write_report(args.out, "End-to-end pipeline FPS", env, results, fps_markdown(results))


def detector_fps(detector: Detector, source: str, frames: int | None) -> float:
    """Detections per second of the bare detector over the source, after one unrecorded warm-up call.

    Called from a worker thread, as the pipeline's detect stage calls it: torch's OpenMP thread
    count is per thread, and on a busy 2-core machine a main-thread detect was measured 20x slower.
    """
    images = list(islice(open_source(source), frames))

    def detect_all() -> float:
        detector.detect(images[0])
        started = time.perf_counter()
        for frame in images:
            detector.detect(frame)
        return time.perf_counter() - started

    with ThreadPoolExecutor(1) as worker:
        return round(len(images) / worker.submit(detect_all).result(), 3)


def fps_results(runs: dict[str, dict[str, Any]], bare_fps: float, refiner: Path) -> dict[str, Any]:
    refined, detect_only = runs["refined"], runs["detect_only"]
    for label, summary in runs.items():
        if summary["status"] != "completed":
            raise SystemExit(f"the {label} run did not complete: {summary['error']}")
    overhead = 1000.0 / refined["fps"] - 1000.0 / detect_only["fps"] if refined["fps"] and detect_only["fps"] else None
    return {
        "refiner": str(refiner),
        "frames": refined["frames"]["processed"],
        "fps_refined": refined["fps"],
        "fps_detect_only": detect_only["fps"],
        "fps_detector_bare": bare_fps,
        "overhead_ms_per_frame": None if overhead is None else round(overhead, 3),
        "queue_occupancy": {label: summary["queue_occupancy"] for label, summary in runs.items()},
        "stage_latency_ms": {label: summary["latency_ms"] for label, summary in runs.items()},
        "objects": refined["objects"],
    }


def fps_markdown(results: dict[str, Any]) -> str:
    rows = [
        ["pipeline, detect + refine", results["fps_refined"]],
        ["pipeline, detect only", results["fps_detect_only"]],
        ["detector alone (no pipeline)", results["fps_detector_bare"]],
    ]
    stage_rows = [
        [label, stage, values["p50_ms"], values["p95_ms"]]
        for label, stages in results["stage_latency_ms"].items()
        for stage, values in stages.items()
    ]
    occupancy_rows = [
        [label, stage, values["mean"], values["max"], values["capacity"]]
        for label, stages in results["queue_occupancy"].items()
        for stage, values in stages.items()
    ]
    return (
        f"{results['frames']} frames, refiner `{results['refiner']}`.\n\n"
        + markdown_table(["what", "FPS"], rows)
        + f"\n\nRefinement adds {results['overhead_ms_per_frame']} ms per frame to the pipeline "
        + "(1000/FPS refined - 1000/FPS detect-only).\n\n"
        + markdown_table(["run", "stage", "p50 ms", "p95 ms"], stage_rows)
        + "\n\nQueue occupancy: items waiting in each stage's inbox when it took one (the item included), "
        + "of its capacity; a stage whose inbox is full on average is the bottleneck.\n\n"
        + markdown_table(["run", "stage inbox", "mean", "max", "capacity"], occupancy_rows)
        + "\n"
    )
