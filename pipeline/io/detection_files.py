"""Replay saved detections (COCO results JSON, MOT det.txt) as if a detector produced them.

Replays make runs repeatable and let the refiner be measured on any detector's output without
running that detector. Frames are matched to saved detections as follows:
- MOT det.txt: frame numbers are 1-based, so frame index i reads the rows of frame i + 1.
- COCO results: with a COCO ground-truth json (`--coco-gt`), a frame's image id is the id of the
  GT image whose file_name is the longest trailing part of the frame's name (its path for image
  folders, so "seq/img1/000001.jpg" matches ".../seq/img1/000001.jpg"; "<video name>#<index>" for
  videos, as pipeline.data.synthetic writes them), and class names come from its categories. Without
  it, image ids are frame index + 1 and class names are the category ids.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.core.calibration import GENERIC_PROFILE
from pipeline.core.errors import DetectorError
from pipeline.core.geometry import xywh_to_xyxy
from pipeline.core.types import Detections, Frame

MOT_CLASS_NAMES = ("pedestrian",)  # MOTChallenge det.txt rows carry no class
COCO_RESULT_KEYS = frozenset({"image_id", "category_id", "bbox", "score"})


class ReplayDetector:
    """Looks up the saved detections of each frame by a key derived from the frame.

    Whatever detector made them is unknown, so its boxes get the "generic" calibration profile.
    """

    profile = GENERIC_PROFILE

    def __init__(
        self, by_key: dict[int, Detections], class_names: tuple[str, ...], key_of: Callable[[Frame], int], description: str
    ) -> None:
        self.class_names = class_names
        self.description = description
        self._by_key = by_key
        self._key_of = key_of
        self._empty = Detections.empty(class_names)

    def detect(self, frame: Frame) -> Detections:
        return self._by_key.get(self._key_of(frame), self._empty)


def open_detections_file(path: Path, coco_gt: Path | None = None) -> ReplayDetector:
    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"detections file {path} does not exist; check --detector")
    if path.suffix.lower() == ".txt":
        return load_mot_detections(path)
    return load_coco_results(path, coco_gt)


def load_mot_detections(path: Path) -> ReplayDetector:
    """MOTChallenge det.txt: frame, id, left, top, width, height, score[, ...], frames 1-based."""
    rows: dict[int, list[list[float]]] = defaultdict(list)
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.replace(" ", "").split(",")]
        except ValueError:
            values = []
        if len(values) < 7:
            raise DetectorError(f"{path}:{number} is not a MOT row (frame,id,x,y,w,h,score,...); fix or regenerate the file")
        if not (math.isfinite(values[0]) and values[0] >= 1 and values[0] == int(values[0])):
            raise DetectorError(f"{path}:{number} has frame number {values[0]}; MOT frames are whole numbers from 1")
        # Box values are kept as they are: NaN, infinite or empty boxes pass through unrefined (pipeline.refine.refiner).
        rows[int(values[0])].append(values[2:7])
    tables = {frame_number: np.array(values) for frame_number, values in rows.items()}
    by_frame = {
        frame_number: Detections(xywh_to_xyxy(table[:, :4]), table[:, 4], np.zeros(len(table)), MOT_CLASS_NAMES)
        for frame_number, table in tables.items()
    }
    return ReplayDetector(by_frame, MOT_CLASS_NAMES, one_based_frame_number, f"MOT detections {path}")


def load_coco_results(path: Path, coco_gt: Path | None = None) -> ReplayDetector:
    """COCO results list [{image_id, category_id, bbox: [x, y, w, h], score}, ...]."""
    results = _read_json(path)
    if not isinstance(results, list) or not all(isinstance(r, dict) and r.keys() >= COCO_RESULT_KEYS for r in results):
        raise DetectorError(f"{path} is not a COCO results list of {{image_id, category_id, bbox, score}}; check --detector")
    for number, result in enumerate(results):
        if not _is_coco_result(result):
            raise DetectorError(
                f"{path} entry {number} is not {{image_id: int, category_id: int, bbox: [x, y, w, h], score: number}}; "
                "fix or regenerate the file"
            )
    if coco_gt is not None:
        categories, key_of = _gt_categories_and_keys(coco_gt)
    else:
        categories = [(category_id, str(category_id)) for category_id in sorted({r["category_id"] for r in results})]
        key_of = one_based_frame_number
    if not categories:
        raise DetectorError(f"no categories found for {path}; pass --coco-gt with a COCO ground-truth json")
    class_index = {category_id: index for index, (category_id, _) in enumerate(categories)}
    class_names = tuple(name for _, name in categories)
    unknown = {r["category_id"] for r in results} - class_index.keys()
    if unknown:
        raise DetectorError(f"{path} uses category ids {sorted(unknown)} missing from {coco_gt}; use the matching GT json")
    grouped: dict[int, list[dict]] = defaultdict(list)
    for result in results:
        grouped[result["image_id"]].append(result)
    by_image = {
        image_id: Detections(
            xywh_to_xyxy([r["bbox"] for r in rows]),
            np.array([r["score"] for r in rows], dtype=np.float64),
            np.array([class_index[r["category_id"]] for r in rows]),
            class_names,
        )
        for image_id, rows in grouped.items()
    }
    return ReplayDetector(by_image, class_names, key_of, f"COCO results {path}")


def _is_coco_result(result: dict) -> bool:
    def number(value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    bbox = result["bbox"]
    return (
        isinstance(result["image_id"], int) and not isinstance(result["image_id"], bool)
        and isinstance(result["category_id"], int) and not isinstance(result["category_id"], bool)
        and isinstance(bbox, list) and len(bbox) == 4 and all(number(v) for v in bbox)
        and number(result["score"])
    )


def _gt_categories_and_keys(coco_gt: Path) -> tuple[list[tuple[int, str]], Callable[[Frame], int]]:
    gt = _read_json(coco_gt)
    try:
        categories = sorted((int(c["id"]), str(c["name"])) for c in gt.get("categories", []))
        image_ids = {str(image["file_name"]): int(image["id"]) for image in gt.get("images", [])}
    except (AttributeError, KeyError, TypeError, ValueError):
        raise DetectorError(f"{coco_gt} is not a COCO ground-truth json (images, categories); check --coco-gt") from None
    return categories, _gt_image_id(image_ids, coco_gt)


def one_based_frame_number(frame: Frame) -> int:
    """MOT frame numbers, and COCO image ids when no GT json says otherwise."""
    return frame.index + 1


def _gt_image_id(image_ids: dict[str, int], gt_path: Path) -> Callable[[Frame], int]:
    def key_of(frame: Frame) -> int:
        parts = Path(frame.name).parts
        for start in range(len(parts)):
            image_id = image_ids.get("/".join(parts[start:]))
            if image_id is not None:
                return image_id
        raise DetectorError(f"frame {frame.name!r} is not an image of {gt_path}; pass the GT json of this source")

    return key_of


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DetectorError(f"cannot read {path} as text ({error}); check --detector") from None


def _read_json(path: Path) -> object:
    try:
        return json.loads(_read_text(path))
    except (json.JSONDecodeError, RecursionError) as error:
        raise DetectorError(f"cannot read {path} as JSON ({error}); check the path") from None
