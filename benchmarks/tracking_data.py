"""The sequences the tracking benchmark scores: generated clips with exact ids, and mot17-mini's sequences.

A sequence is its frames, the detector's boxes per frame and the ground truth with object ids.
On the generated clips the "detector" is the ground truth with each side moved by N(0, sigma x side)
independently per frame (pipeline.data.jitter, the accuracy benchmark's known error level) and a few
boxes missed: exactly the frame-to-frame shimmer a refiner and a smoother should remove.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.jitter import jitter_boxes
from benchmarks.tracking_metrics import TruthFrame
from pipeline.core.geometry import xywh_to_xyxy
from pipeline.core.types import Detections, Frame
from pipeline.io.detectors import Detector
from pipeline.refine.class_mapping import canonical_name
from pipeline.data.synthetic import CLASS_NAMES, generate_tracked_clip


@dataclass(frozen=True)
class TrackedSequence:
    name: str
    images: list[np.ndarray]
    detections: list[Detections]
    truth: list[TruthFrame]
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class ClipSettings:
    frames: int = 90
    size: tuple[int, int] = (640, 480)
    objects: int = 10
    standing: float = 0.3
    slow: float = 0.3
    sigma: float = 0.05
    miss_rate: float = 0.05


def synthetic_sequence(seed: int, settings: ClipSettings) -> TrackedSequence:
    """A generated clip (standing, slow and moving objects crossing each other) and its jittered boxes."""
    rng = np.random.default_rng(10_000 + seed)
    width, height = settings.size
    images, detections, truth = [], [], []
    scenes = list(generate_tracked_clip(settings.frames, width, height, seed, settings.objects, settings.standing, settings.slow))
    first = {int(obj): box for obj, box in zip(scenes[0][1], scenes[0][0].boxes, strict=True)}
    standing = {obj for obj in first if all(np.array_equal(box, first[obj]) for scene, ids in scenes
                                            for box, other in zip(scene.boxes, ids, strict=True) if other == obj)}
    for scene, ids in scenes:
        boxes = scene.boxes.astype(np.float64)
        kept = rng.random(len(boxes)) >= settings.miss_rate
        jittered = jitter_boxes(boxes[kept], settings.sigma, rng, (width, height))
        scores = rng.uniform(0.3, 1.0, int(kept.sum()))
        images.append(scene.image)
        detections.append(Detections(jittered, scores, scene.class_ids[kept], CLASS_NAMES))
        truth.append(TruthFrame(boxes, ids.copy(), scene.class_ids, np.array([int(obj) in standing for obj in ids])))
    return TrackedSequence(f"synthetic-seed{seed}", images, detections, truth, CLASS_NAMES)


def mot17_sequences(
    root: Path, only: tuple[str, ...] = (), detector: Detector | None = None, length: int | None = None
) -> list[TrackedSequence]:
    """mot17-mini's sequences (4-7 frames each; `only`: names containing one of these): MOT17's pedestrian
    GT with track ids (don't-care rows left out) and the detections shipped with them, or `detector`'s
    person boxes (the crowd clip: YOLOv8n at a low threshold finds far more boxes). `length`: each
    sequence played forward and back until it is this long, as `benchmarks crowd` (branch crowd) builds
    its crowd clip: real consecutive frames throughout, long enough for reuse's max age to matter."""
    annotations = root / "annotations"
    truth_doc = json.loads((annotations / "gt_pedestrian.json").read_text())
    results = json.loads((annotations / "det_results.json").read_text())
    ground = defaultdict(list)
    for annotation in truth_doc["annotations"]:
        if not annotation.get("iscrowd", 0):
            ground[annotation["image_id"]].append(annotation)
    detected = defaultdict(list)
    for result in results:
        detected[result["image_id"]].append(result)
    by_sequence = defaultdict(list)
    for image in truth_doc["images"]:
        by_sequence[image["mot_sequence"]].append(image)
    names = ("pedestrian",)
    sequences = []
    for sequence, images in sorted(by_sequence.items()):
        if only and not any(part in sequence for part in only):
            continue
        frames, detections, truth = [], [], []
        for image in sorted(images, key=lambda image: image["mot_frame"]):
            frames.append(cv2.imread(str(root / "sequences" / image["file_name"]), cv2.IMREAD_COLOR))
            if detector is None:
                rows = detected[image["id"]]
                boxes = xywh_to_xyxy(np.array([row["bbox"] for row in rows], np.float64).reshape(-1, 4))
                detections.append(Detections(boxes, [row["score"] for row in rows], np.zeros(len(rows)), names))
            else:
                frame = Frame(len(frames) - 1, frames[-1], None, image["file_name"])
                detections.append(person_boxes(detector.detect(frame), names))
            gt = ground[image["id"]]
            gt_boxes = xywh_to_xyxy(np.array([a["bbox"] for a in gt], np.float64).reshape(-1, 4))
            truth.append(TruthFrame(gt_boxes, np.array([a["track_id"] for a in gt]), np.zeros(len(gt), np.int64),
                                    np.zeros(len(gt), bool)))
        order = ping_pong(len(frames), length or len(frames))
        sequences.append(TrackedSequence(sequence, [frames[i] for i in order], [detections[i] for i in order],
                                         [truth[i] for i in order], names))
    return sequences


def ping_pong(count: int, length: int) -> list[int]:
    """Frame indices 0..count-1, then back to 1, and again, `length` of them (0, 1, 2, 1, 0, 1, ... for 3)."""
    cycle = list(range(count)) + list(range(count - 2, 0, -1))
    return [cycle[i % len(cycle)] for i in range(length)]


def person_boxes(detections: Detections, names: tuple[str, ...]) -> Detections:
    """A COCO detector's person boxes, as the one class of `names`."""
    person = np.array([canonical_name(detections.class_names[c]) == "person" for c in detections.class_ids], bool)
    return Detections(detections.boxes[person], detections.scores[person], np.zeros(int(person.sum())), names)
