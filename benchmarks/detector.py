"""Detector latency per frame, several model files of the same network side by side (torch, OpenVINO, ONNX).

Which file `python -m pipeline` uses by default on a CPU is decided here. Each frame goes to every
detector in turn (round robin), so a load change on a shared machine hits all of them alike; the
calls run in one worker thread, as the pipeline's detect stage makes them (torch's thread count is
per thread). Frames: real crowd frames (mot17-mini sequences 02 and 11, 1920x1080) and the bundled
clip's (768x432). Each detector's boxes are matched to the first detector's (IoU > 0.5, same class)
to show the files are the same detector: the matched IoU and the share of boxes matched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.crowd import MOT17_MINI, crowd_frame_paths
from benchmarks.report import environment, markdown_table, write_report
from pipeline.app.demo import DEMO_FRAMES
from pipeline.core.geometry import match_boxes
from pipeline.core.types import Detections, Frame
from pipeline.io.detectors import UltralyticsDetector
from pipeline.io.sources import open_source
from pipeline.model.defaults import DEMO_VIDEO, DETECTOR_ONNX, DETECTOR_OPENVINO, DETECTOR_PT, MODELS_DIR

# The OpenVINO export once tools/export_detector_openvino.py has written it.
DEFAULT_DETECTORS = ",".join(
    str(MODELS_DIR / name) for name in (DETECTOR_PT, DETECTOR_OPENVINO, DETECTOR_ONNX) if (MODELS_DIR / name).exists()
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detectors", default=DEFAULT_DETECTORS, help="model files or folders, comma separated; the first is the reference for box agreement")
    parser.add_argument("--frames", type=int, default=24, help="measured frames per clip")
    parser.add_argument("--warmup", type=int, default=2, help="unrecorded frames first, per detector")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--data", type=Path, default=MOT17_MINI, help="mot17-mini, the crowd frames")
    parser.add_argument("--out", type=Path, default=None, help="report JSON (a .md is written beside it)")


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    paths = [Path(text.strip()) for text in args.detectors.split(",") if text.strip()]
    detectors = {str(path): UltralyticsDetector(path, imgsz=args.imgsz, conf=args.conf, device="cpu") for path in paths}
    clips = {"crowd": crowd_frames(args.data, args.frames + args.warmup), "bundled": bundled_frames(args.frames + args.warmup)}
    with ThreadPoolExecutor(1) as worker:
        results = {name: worker.submit(measure, detectors, frames, args.warmup).result() for name, frames in clips.items()}
    env["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    write_report(args.out, "Detector latency per frame, side by side", env, {"clips": results}, detector_markdown(results))


def crowd_frames(data: Path, count: int) -> list[Frame]:
    paths = crowd_frame_paths(data)
    return [Frame(index, cv2.imread(str(paths[index % len(paths)])), None, str(paths[index % len(paths)])) for index in range(count)]


def bundled_frames(count: int) -> list[Frame]:
    """`count` frames spread evenly over the demo's frames (people enter after the first seconds)."""
    stride = max(1, DEMO_FRAMES // count)
    return list(islice(open_source(str(DEMO_VIDEO)), 0, stride * count, stride))


def measure(detectors: dict[str, UltralyticsDetector], frames: list[Frame], warmup: int) -> dict[str, Any]:
    """Per detector: latency p50 / p95 / mean (ms), boxes per frame, and agreement with the first detector."""
    times: dict[str, list[float]] = {name: [] for name in detectors}
    boxes: dict[str, list[Detections]] = {name: [] for name in detectors}
    for index, frame in enumerate(frames):
        for name, detector in detectors.items():
            started = time.perf_counter()
            detections = detector.detect(frame)
            if index >= warmup:
                times[name].append(1000 * (time.perf_counter() - started))
                boxes[name].append(detections)
    reference = boxes[next(iter(detectors))]
    return {
        "frame_size": f"{frames[0].image.shape[1]}x{frames[0].image.shape[0]}",
        "frames": len(frames) - warmup,
        "detectors": {
            name: {
                "p50_ms": round(float(np.percentile(times[name], 50)), 2),
                "p95_ms": round(float(np.percentile(times[name], 95)), 2),
                "mean_ms": round(statistics.fmean(times[name]), 2),
                "boxes_per_frame": round(statistics.fmean(len(found) for found in boxes[name]), 2),
                **agreement(reference, boxes[name]),
            }
            for name in detectors
        },
    }


def agreement(reference: list[Detections], other: list[Detections]) -> dict[str, float | None]:
    """Boxes of `other` matched one to one to the reference's (same class, IoU > 0.5): share matched, mean and min IoU."""
    ious, total = [], 0
    for ours, theirs in zip(reference, other, strict=True):
        total += max(len(ours), len(theirs))
        for class_id in set(ours.class_ids.tolist()) & set(theirs.class_ids.tolist()):
            mask_a, mask_b = ours.class_ids == class_id, theirs.class_ids == class_id
            ious += match_boxes(ours.boxes[mask_a], theirs.boxes[mask_b])[2].tolist()
    return {
        "matched_share": round(len(ious) / total, 3) if total else None,
        "matched_iou_mean": round(statistics.fmean(ious), 4) if ious else None,
        "matched_iou_min": round(min(ious), 4) if ious else None,
    }


def detector_markdown(results: dict[str, Any]) -> str:
    rows = [
        [clip_name, clip["frame_size"], name, values["p50_ms"], values["p95_ms"], values["mean_ms"], values["boxes_per_frame"],
         values["matched_share"], values["matched_iou_mean"], values["matched_iou_min"]]
        for clip_name, clip in results.items() for name, values in clip["detectors"].items()
    ]
    return (
        "Round robin per frame, one worker thread; agreement: boxes matched to the first detector's "
        "(same class, IoU > 0.5), share of boxes matched, mean and min IoU of the matches.\n\n"
        + markdown_table(["clip", "size", "detector", "p50 ms", "p95 ms", "mean ms", "boxes/frame", "matched", "IoU mean", "IoU min"], rows)
        + "\n"
    )
