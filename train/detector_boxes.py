"""`python -m train.detector_boxes`: run a real detector once over a training set and cache its boxes.

A refiner trained only on jittered ground truth has never seen how a real detector errs, nor a
box that found no object. Running the detector once and saving its boxes as a COCO results file
lets training draw real boxes next to jittered ones (train/data.py matches them to the truth),
and every later run reuses the file instead of detecting again.

Example (the committed person refiner's training sets, see engines/README.md):
    python -m train.detector_boxes --annotations A.json --images DIR --detector yolov8n.onnx --out runs/cache/yolo-A.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.core.errors import DetectorError
from pipeline.core.types import Frame
from pipeline.io.detectors import UltralyticsDetector
from train.data import DatasetError, category_names, load_coco


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.detector_boxes", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--annotations", type=Path, required=True, help="COCO-format annotations JSON (its categories name the classes kept)")
    parser.add_argument("--images", type=Path, required=True, help="folder the file_name entries are relative to")
    parser.add_argument("--detector", type=Path, required=True, help="Ultralytics model file, e.g. the COCO YOLOv8n")
    parser.add_argument("--conf", type=float, default=0.05, help="confidence threshold; low, so false positives are kept too (default: %(default)s)")
    parser.add_argument("--imgsz", type=int, default=640, help="detector input size (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="COCO results JSON to write")
    return parser.parse_args(argv)


def detect_all(annotations: Path, images_dir: Path, detector: UltralyticsDetector) -> list[dict]:
    """COCO results for every image, only the classes the annotations name (matched by name)."""
    coco = load_coco(annotations)
    names, _ = category_names(coco)
    category_of = {c["name"]: c["id"] for c in coco["categories"]}
    wanted = np.array([detector.class_names[i] in category_of for i in range(len(detector.class_names))])
    if not wanted.any():
        raise DatasetError(f"the detector's classes and {annotations}'s ({', '.join(names)}) share no name")
    results = []
    for index, info in enumerate(tqdm(coco["images"], desc="detect", leave=False)):
        image = cv2.imread(str(images_dir / info["file_name"]), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"cannot read image {images_dir / info['file_name']}")
        found = detector.detect(Frame(index, image, None, info["file_name"]))
        for box, score, class_id in zip(found.boxes.astype(np.float64), found.scores, found.class_ids):
            if wanted[class_id]:
                x1, y1, x2, y2 = (round(float(v), 2) for v in box)
                results.append({"image_id": info["id"], "category_id": category_of[detector.class_names[class_id]],
                                "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)], "score": round(float(score), 4)})
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        detector = UltralyticsDetector(args.detector, imgsz=args.imgsz, conf=args.conf, device="cpu")
        results = detect_all(args.annotations, args.images, detector)
    except (DetectorError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results))
    print(f"{len(results)} boxes from {args.detector.name} in {time.monotonic() - started:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
