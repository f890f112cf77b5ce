"""A contact sheet (PNG) of a run: a few frames with the detector's and the refined boxes, zoomed where they differ.

Each row: the frame with every box, then the middle of each side of the box that moved most,
magnified, where the object's extremities meet the box.

Why: refined boxes move a few pixels, invisible at video scale; one image that picks the frames
where the refiner moved a box most, and magnifies that box, shows what refinement does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.io.sinks import DETECTOR_COLOUR, REFINED_COLOUR, draw_legend

PANEL_HEIGHT = 300  # pixels of each row; the frame is scaled to it and the zoom is as tall
ZOOM_SHARE = 0.4  # each side zoom shows a square this share of the box's shorter side
MIN_FRAME_GAP = 20  # frames picked at least this far apart, so the sheet shows different moments


@dataclass(frozen=True)
class Pick:
    """One frame of the sheet and the object in it whose box moved most."""

    frame: int
    detector_box: np.ndarray
    refined_box: np.ndarray
    shift_px: float  # mean absolute side shift of that box
    objects: list[dict]  # every object of the frame (detections.jsonl records)


def pick_frames(detections_jsonl: Path, count: int = 4, min_gap: int = MIN_FRAME_GAP) -> list[Pick]:
    """The `count` frames whose most-moved refined box moved most, at least `min_gap` frames apart, in frame order."""
    candidates = []
    for line in Path(detections_jsonl).read_text().splitlines():
        record = json.loads(line)
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for obj in record["objects"]:
            if obj["refined_box"] is None or None in obj["refined_box"] or None in obj["detector_box"]:
                continue
            detector, refined = np.array(obj["detector_box"]), np.array(obj["refined_box"])
            shift = float(np.abs(refined - detector).mean())
            if best is None or shift > best[0]:
                best = (shift, detector, refined)
        if best is not None:
            candidates.append(Pick(record["frame"], best[1], best[2], best[0], record["objects"]))
    chosen: list[Pick] = []
    for pick in sorted(candidates, key=lambda p: -p.shift_px):
        if all(abs(pick.frame - other.frame) >= min_gap for other in chosen):
            chosen.append(pick)
        if len(chosen) == count:
            break
    return sorted(chosen, key=lambda p: p.frame)


def read_frames(video: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """Decode the frames with these indices by reading the video in order (seeking is unreliable with mp4v)."""
    wanted, frames = set(indices), {}
    capture = cv2.VideoCapture(str(video))
    index = 0
    try:
        while wanted - frames.keys():
            ok, image = capture.read()
            if not ok:
                break
            if index in wanted:
                frames[index] = image
            index += 1
    finally:
        capture.release()
    return frames


def write_contact_sheet(video: Path, detections_jsonl: Path, out: Path, count: int = 4, title: str = "") -> Path | None:
    """Write the sheet to `out` (PNG); None when no box was refined, so there is nothing to show."""
    picks = pick_frames(detections_jsonl, count)
    if not picks:
        return None
    images = read_frames(video, [pick.frame for pick in picks])
    rows = [_row(images[pick.frame], pick) for pick in picks if pick.frame in images]
    width = max(row.shape[1] for row in rows)
    rows = [cv2.copyMakeBorder(row, 0, 4, 0, width - row.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255)) for row in rows]
    header = np.full((56, width, 3), 255, np.uint8)
    draw_legend(header, origin=(8, 8))
    cv2.putText(header, title, (200, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.vstack([header, *rows])
    out = Path(out)
    if not cv2.imwrite(str(out), sheet):
        raise OSError(f"OpenCV cannot write {out}")
    return out


def _row(image: np.ndarray, pick: Pick) -> np.ndarray:
    """The whole frame with every box, then the zoom on the box that moved most."""
    scale = PANEL_HEIGHT / image.shape[0]
    frame = cv2.resize(image, (round(image.shape[1] * scale), PANEL_HEIGHT), interpolation=cv2.INTER_AREA)
    for obj in pick.objects:
        _draw(frame, np.array(obj["detector_box"], dtype=float) * scale, DETECTOR_COLOUR, 1)
        if obj["refined_box"] is not None:
            _draw(frame, np.array(obj["refined_box"], dtype=float) * scale, REFINED_COLOUR, 1)
    iou = _iou(pick.detector_box, pick.refined_box)
    _label(frame, f"frame {pick.frame}: box moved {pick.shift_px:.1f} px per side, IoU {iou:.2f} with the detector's")
    return np.hstack([frame, np.full((PANEL_HEIGHT, 4, 3), 255, np.uint8), _zoom(image, pick)])


def _zoom(image: np.ndarray, pick: Pick) -> np.ndarray:
    """The middle of each side of the moved box, magnified in a 2 x 2 grid (top, bottom, left, right):
    where the object's extremities (head, feet, arms) meet the box, and the two boxes differ."""
    union = np.concatenate([np.minimum(pick.detector_box[:2], pick.refined_box[:2]), np.maximum(pick.detector_box[2:], pick.refined_box[2:])])
    side = max(ZOOM_SHARE * float(min(union[2] - union[0], union[3] - union[1])), 2 * pick.shift_px + 8, 16.0)
    tile = PANEL_HEIGHT // 2
    centre_x, centre_y = (union[0] + union[2]) / 2, (union[1] + union[3]) / 2
    places = {"top": (centre_x, union[1]), "bottom": (centre_x, union[3]), "left": (union[0], centre_y), "right": (union[2], centre_y)}
    tiles = []
    for name, (x, y) in places.items():
        zoom = _magnified(image, pick, x, y, side, tile)
        cv2.putText(zoom, name, (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(zoom)
    grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    cv2.line(grid, (tile, 0), (tile, 2 * tile), (255, 255, 255), 1)
    cv2.line(grid, (0, tile), (2 * tile, tile), (255, 255, 255), 1)
    _label(grid, f"sides of the box, x{tile / side:.1f}")
    return grid


def _magnified(image: np.ndarray, pick: Pick, x: float, y: float, side: float, tile: int) -> np.ndarray:
    """A `side`-pixel square of the frame centred on (x, y), scaled to `tile` pixels, both boxes drawn on it."""
    height, width = image.shape[:2]
    x1, y1 = int(round(x - side / 2)), int(round(y - side / 2))
    size = int(round(side))
    padded = cv2.copyMakeBorder(image, size, size, size, size, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    crop = padded[y1 + size : y1 + 2 * size, x1 + size : x1 + 2 * size]
    scale = tile / size
    zoom = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_CUBIC)
    offset = np.array([x1, y1, x1, y1], dtype=float)
    _draw(zoom, (pick.detector_box - offset) * scale, DETECTOR_COLOUR, 2)
    _draw(zoom, (pick.refined_box - offset) * scale, REFINED_COLOUR, 2)
    return zoom


def _draw(canvas: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)


def _label(canvas: np.ndarray, text: str) -> None:
    (text_width, text_height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(canvas, (0, 0), (text_width + 8, text_height + 10), (0, 0, 0), -1)
    cv2.putText(canvas, text, (4, text_height + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    from pipeline.core.geometry import box_iou_pairs

    return float(box_iou_pairs(a[None], b[None])[0])
