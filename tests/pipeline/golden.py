"""Golden outputs of the committed models on real frames of the bundled clip, and the command that writes them.

Why: a wrong edge offset in the network or a box-format slip in the detector moves real boxes by pixels
while every shape-and-type test stays green. These fix what the committed YOLOv8n finds on four real
frames of assets/one-by-one-person-detection.mp4 and what the committed person refiner answers for its
person boxes (and a displaced copy of each, so there is something to refine), as the torch CPU backend
computes them. Tests compare every CPU backend with them (tests/pipeline/model/test_golden_refiner.py,
tests/pipeline/io/test_detectors.py).

Regenerate after a deliberate change of either model (re-check the change first):
    python -m tests.pipeline.golden
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from pipeline.app.contact_sheet import read_frames

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "assets" / "one-by-one-person-detection.mp4"
GOLDEN = Path(__file__).with_name("golden_one_by_one_person.json")
DETECTOR = REPO / "models" / "yolov8n-coco.pt"
DETECTOR_OPTIONS = {"imgsz": 640, "conf": 0.25, "device": "cpu"}
FRAMES = (120, 400, 1000, 1300)
DISPLACEMENT = (12.0, 25.0, -8.0, 15.0)  # added to each person box: a poor box for the refiner to move


def clip_frames(indices: tuple[int, ...] = FRAMES) -> dict[int, np.ndarray]:
    """The clip's frames at `indices`."""
    frames = read_frames(CLIP, list(indices))
    if len(frames) != len(indices):
        raise RuntimeError(f"{CLIP} has fewer than {max(indices) + 1} frames")
    return frames


def refiner_boxes(golden: dict) -> dict[int, np.ndarray]:
    """Per frame, the refiner's input boxes: each person the detector found, then a displaced copy of each."""
    boxes = {}
    for frame in golden["frames"]:
        people = np.array([d["box"] for d in frame["detections"] if d["class"] == "person"], dtype=np.float64)
        boxes[frame["index"]] = np.concatenate([people, people + DISPLACEMENT])
    return boxes


def load() -> dict:
    return json.loads(GOLDEN.read_text())


def write() -> Path:
    """Run the committed YOLOv8n and the committed person refiner (torch, CPU) and store what they return."""
    from pipeline.core.types import Detections, Frame
    from pipeline.io.detectors import UltralyticsDetector
    from pipeline.model.artifacts import ModelFile
    from pipeline.model.defaults import default_refiner
    from pipeline.refine.refiner import build_frame_refiner

    detector = UltralyticsDetector(DETECTOR, **DETECTOR_OPTIONS)
    images = clip_frames()
    golden: dict = {"clip": CLIP.name, "detector": {"file": DETECTOR.name, **DETECTOR_OPTIONS}, "frames": []}
    for index in FRAMES:
        found = detector.detect(Frame(index, images[index], None, f"{CLIP.name}#{index}"))
        golden["frames"].append({"index": index, "detections": [
            {"class": found.class_names[c], "score": round(float(s), 4), "box": [round(float(v), 2) for v in box]}
            for box, s, c in zip(found.boxes, found.scores, found.class_ids, strict=True)
        ]})  # fmt: skip
    model = ModelFile.read(default_refiner())
    refiner = build_frame_refiner(model, ("person",), backend="torch", device="cpu", policy="replace")
    golden["refiner"] = {"file": model.path.name, "weights_digest": model.spec.weights_digest, "frames": []}
    for index, boxes in refiner_boxes(golden).items():
        detections = Detections(boxes, np.ones(len(boxes)), np.zeros(len(boxes), np.int64), ("person",))
        job = refiner.prepare(Frame(index, images[index], None, f"{CLIP.name}#{index}"), detections)
        outputs = refiner.backend.refine(job.crops, job.vectors)
        result = refiner.finish(job)
        golden["refiner"]["frames"].append({
            "index": index,
            "outputs": np.round(outputs.astype(np.float64), 6).tolist(),
            "refined_boxes": np.round(result.refined_boxes, 4).tolist(),
        })  # fmt: skip
    text = json.dumps(golden, indent=1)
    flat_lists = re.sub(r"\[\s+([-0-9.e,\s]+?)\s+\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    GOLDEN.write_text(flat_lists + "\n")
    return GOLDEN


if __name__ == "__main__":
    print(f"wrote {write()}", file=sys.stderr)
