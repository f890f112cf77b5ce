"""Soak: N streams for M frames each through the real app, with memory, threads and frame accounting watched.

What it exercises: the app's run of many streams (sources -> mux -> detect -> crop -> one refiner call per
cycle -> detections.jsonl + one annotated video per stream -> summary.json) with the committed person
refiner on its real backend (auto: ONNX Runtime on a CPU). What it makes cheap, so that 2 x 10,000
frames finish in minutes on 2 cores: every stream loops `--clip-frames` frames of the bundled clip,
decoded once and downscaled by `--scale`, and the detector replays the boxes the committed YOLOv8n
found on those frames (computed once at start, the same boxes every loop). The refiner, cropper,
queues, sinks and summary do all of their real work on every frame.

Checked: the process's RSS and thread count, sampled every `--sample-s` seconds, stay flat in the steady
state, from the end of the warm-up (the first fifth of the frames) until the sources are read to their end
(RSS growth below `--max-growth-mb`, the same thread count throughout);
every frame read is accounted for (read = processed + dropped + lost + unfinished) and none is lost;
the run completes. Exit 1 when a check fails, after the report.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil

from benchmarks.report import environment, markdown_table, write_report
from pipeline.app.contact_sheet import read_frames
from pipeline.app.run import RunConfig, run
from pipeline.core.types import Detections, Frame
from pipeline.io.detectors import UltralyticsDetector
from pipeline.io.sources import FrameSource
from pipeline.model.defaults import default_detector, default_refiner

CLIP = Path("assets/one-by-one-person-detection.mp4")
FIRST_FRAME = 70  # the clip's first person walks in at about frame 65


class LoopedFrames(FrameSource):
    """`count` frames cycling through a fixed list of images: a long file stream (lossless) at no decoding cost."""

    def __init__(self, images: list[np.ndarray], count: int, fps: float, name: str) -> None:
        self._images, self.frame_count, self.fps, self.description = images, count, fps, name
        self.yielded = 0

    def __iter__(self) -> Iterator[Frame]:
        for index in range(self.frame_count):
            self.yielded = index + 1
            yield Frame(index, self._images[index % len(self._images)], index / self.fps, f"{self.description}#{index}")


class ReplayedBoxes:
    """The boxes a real detector found on each looped image, returned again every loop (person class only)."""

    class_names = ("person",)
    profile = "yolov8n"  # the committed YOLOv8n's boxes: the refiner's calibration profile for them

    def __init__(self, boxes: list[np.ndarray], scores: list[np.ndarray], description: str) -> None:
        self._boxes, self._scores, self.description = boxes, scores, description

    def detect(self, frame: Frame) -> Detections:
        slot = frame.index % len(self._boxes)
        boxes = self._boxes[slot]
        return Detections(boxes, self._scores[slot], np.zeros(len(boxes), np.int64), self.class_names)

    def detect_many(self, frames: list[Frame]) -> list[Detections]:
        return [self.detect(frame) for frame in frames]


class Sampler:
    """RSS (MiB) and thread count of this process every `interval` s, with the frames read so far, in a thread."""

    def __init__(self, sources: list[LoopedFrames], interval: float) -> None:
        self._sources, self._interval = sources, interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.samples: list[dict[str, float]] = []
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        if not self.samples:  # a run shorter than one interval: one sample after it
            self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        self.samples.append({
            "t_s": round(time.perf_counter() - self._started, 1),
            "frames_read": sum(source.yielded for source in self._sources),
            "rss_mib": round(self._process.memory_info().rss / 2**20, 1),
            "threads": self._process.num_threads(),
        })  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", type=int, default=2, help="streams run at once")
    parser.add_argument("--frames", type=int, default=10_000, help="frames per stream")
    parser.add_argument("--clip-frames", type=int, default=60, help="frames of the bundled clip each stream loops")
    parser.add_argument("--scale", type=float, default=0.5, help="frame size relative to the clip's 768 x 432")
    parser.add_argument("--refiner", type=Path, default=None, help="default: the app's, engines/refiner-person-*.safetensors")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--sample-s", type=float, default=2.0, help="seconds between RSS / thread samples")
    parser.add_argument("--max-growth-mb", type=float, default=64.0, help="RSS growth after warm-up that fails the soak")
    parser.add_argument("--out", type=Path, default=None, help="report JSON (a .md is written beside it)")


def looped_inputs(clip_frames: int, scale: float) -> tuple[list[np.ndarray], ReplayedBoxes]:
    """The clip's frames from FIRST_FRAME, downscaled, and the committed YOLOv8n's person boxes on each."""
    indices = list(range(FIRST_FRAME, FIRST_FRAME + clip_frames))
    decoded = read_frames(CLIP, indices)
    images = [cv2.resize(decoded[i], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for i in indices]
    detector = UltralyticsDetector(default_detector(), imgsz=640, conf=0.25, device="cpu")
    boxes, scores = [], []
    for index, image in enumerate(images):
        found = detector.detect(Frame(index, image, None, str(index)))
        people = found.class_ids == found.class_names.index("person")
        boxes.append(found.boxes[people])
        scores.append(found.scores[people])
    return images, ReplayedBoxes(boxes, scores, f"YOLOv8n boxes replayed ({default_detector().name})")


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    images, detector = looped_inputs(args.clip_frames, args.scale)
    sources = [LoopedFrames(images, args.frames, 10.0, f"loop{index}") for index in range(args.streams)]
    refiner = args.refiner or default_refiner()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as scratch:
        config = RunConfig(source=sources[0].description, more_sources=tuple(s.description for s in sources[1:]),
                           refiner=refiner, backend=args.backend, device="cpu", output=Path(scratch) / "run",
                           progress=False)  # fmt: skip
        with Sampler(sources, args.sample_s) as sampler:
            summary = run(config, sources=sources, detector=detector).streams_summary
    results = soak_results(args, summary, sampler.samples, str(refiner), detector.description)
    write_report(args.out, f"Soak: {args.streams} streams x {args.frames} frames", env, results, soak_markdown(results))
    if not results["passed"]:
        raise SystemExit(1)


def accounting(frames: dict[str, int]) -> dict[str, Any]:
    """read = processed + dropped + unfinished from a summary's frames (lost: never read, reported beside)."""
    parts = {key: frames[key] for key in ("processed", "dropped", "unfinished")}
    return {"read": frames["read"], **parts, "lost": frames["lost"], "holds": frames["read"] == sum(parts.values())}


def soak_results(args: argparse.Namespace, summary: dict[str, Any], samples: list[dict[str, float]],
                 refiner: str, detector: str) -> dict[str, Any]:
    """Memory after warm-up (first fifth of the frames) against the end, threads, the accounting identity, checks."""
    total = args.streams * args.frames
    # Steady state: after the warm-up (a fifth of the frames) and before the readers finish (their threads end).
    warm = [s for s in samples if total / 5 <= s["frames_read"] < total] or samples
    after_warm_up = warm[0]["rss_mib"]
    end = warm[-1]["rss_mib"]
    growth = round(end - after_warm_up, 1)
    threads = [s["threads"] for s in warm]
    identity = accounting(summary["frames"])
    checks = {
        "completed": summary["status"] == "completed",
        "accounting identity holds": identity["holds"],
        "no frame lost": identity["lost"] == 0 and identity["unfinished"] == 0,
        f"RSS growth after warm-up below {args.max_growth_mb:g} MiB": growth < args.max_growth_mb,
        "thread count constant after warm-up": min(threads) == max(threads),
    }
    return {
        "streams": args.streams, "frames_per_stream": args.frames, "clip_frames": args.clip_frames, "scale": args.scale,
        "refiner": refiner, "backend": summary["refiner"]["backend"], "detector": detector,
        "status": summary["status"], "elapsed_s": summary["elapsed_s"], "fps": summary["fps"],
        "frames": identity, "objects": summary["objects"],
        "rss_mib": {"after_warm_up": after_warm_up, "max": max(s["rss_mib"] for s in warm), "end": end, "growth": growth},
        "threads": {"min": min(threads), "max": max(threads)},
        "checks": checks, "passed": all(checks.values()), "samples": samples,
    }  # fmt: skip


def soak_markdown(results: dict[str, Any]) -> str:
    frames, rss = results["frames"], results["rss_mib"]
    samples = results["samples"]
    picks = sorted({round(i * (len(samples) - 1) / 10) for i in range(11)})
    return (
        f"{results['streams']} streams x {results['frames_per_stream']} frames through the app's run: "
        f"each stream loops {results['clip_frames']} frames of `{CLIP}` from frame {FIRST_FRAME} at "
        f"{results['scale']:g}x size, the committed YOLOv8n's boxes on them replayed, refiner `{results['refiner']}` on "
        f"{results['backend']}. Status {results['status']}, {results['elapsed_s']:.0f} s, {results['fps']} FPS.\n\n"
        + markdown_table(["read", "processed", "dropped", "lost", "unfinished", "identity holds"],
                         [[frames["read"], frames["processed"], frames["dropped"], frames["lost"], frames["unfinished"],
                           frames["holds"]]])
        + "\n\n"
        + markdown_table(["RSS after warm-up MiB", "RSS max MiB", "RSS at end MiB", "growth MiB", "threads min", "threads max"],
                         [[rss["after_warm_up"], rss["max"], rss["end"], rss["growth"], results["threads"]["min"],
                           results["threads"]["max"]]])
        + "\n\nSamples (every tenth):\n\n"
        + markdown_table(["t s", "frames read", "RSS MiB", "threads"],
                         [[samples[i]["t_s"], samples[i]["frames_read"], samples[i]["rss_mib"], samples[i]["threads"]] for i in picks])
        + "\n\nChecks:\n\n" + "\n".join(f"- {'pass' if ok else 'FAIL'}: {name}" for name, ok in results["checks"].items())
        + "\n"
    )  # fmt: skip
