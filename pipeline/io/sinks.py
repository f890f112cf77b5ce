"""Where results go: detections.jsonl, annotated.mp4, a window, a progress line, summary.json.

Every file sink writes as it goes (JSONL is flushed per frame, the video writer appends), so a
run that is interrupted or fails keeps every frame it finished. summary.json is written with
temp file + rename, so a reader never sees half of it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TextIO

import cv2
import numpy as np

from pipeline.core.types import NO_TRACK, FrameResult, RefineStatus

DETECTOR_COLOUR = (0, 165, 255)  # BGR orange: the detector's box
REFINED_COLOUR = (80, 220, 60)  # BGR green: the refined box
DEFAULT_VIDEO_FPS = 30.0


class Sink(Protocol):
    """Takes every written result of a run, of every stream (`result.stream` says which)."""

    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...


class PerStream:
    """One sink per stream (a video, a window each): a result goes to the sink of its stream."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = tuple(sinks)

    def write(self, result: FrameResult) -> None:
        self.sinks[result.stream].write(result)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def frame_record(result: FrameResult, tag_stream: bool = False) -> dict:
    """One detections.jsonl line: the frame and, per object, both boxes and why the box is what it is.

    `tag_stream`: a run of many streams puts the source's index first (`"stream": i`); one stream does not.
    """
    objects = result.objects
    detections = objects.detections
    records = []
    for index in range(len(detections)):
        iou = objects.predicted_iou[index]
        records.append(
            {
                "class": detections.class_names[detections.class_ids[index]],
                "score": round(float(detections.scores[index]), 4),
                "output_score": round(float(objects.scores[index]), 4),
                "detector_box": _box(detections.boxes[index]),
                "refined_box": None if np.isnan(objects.refined_boxes[index]).any() else _box(objects.refined_boxes[index]),
                "status": str(objects.status[index]),
                "predicted_iou": None
                if np.isnan(iou).any()
                else {"input": round(float(iou[0]), 4), "refined": round(float(iou[1]), 4)},
            }
        )
    if result.tracks is not None:  # --track: ids per stream, so (stream, track) names an object
        for record, track_id, box in zip(records, result.tracks.ids.tolist(), result.tracks.boxes, strict=True):
            record["track"] = None if track_id == NO_TRACK else track_id
            if result.tracks.smoothed:
                record["track_box"] = _box(box) if np.isfinite(box).all() else None
    frame = result.frame
    tag = {"stream": result.stream} if tag_stream else {}
    return {**tag, "frame": frame.index, "timestamp": frame.timestamp, "name": frame.name, "objects": records}


class JsonlSink:
    """detections.jsonl: one line per frame, flushed at once so a crash loses nothing finished.

    `tag_stream`: tag each line with its stream (a run of many streams).
    """

    def __init__(self, path: Path, tag_stream: bool = False) -> None:
        self.path = Path(path)
        self.tag_stream = tag_stream
        self._file: TextIO = self.path.open("x", encoding="utf-8")

    def write(self, result: FrameResult) -> None:
        self._file.write(json.dumps(frame_record(result, self.tag_stream), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def draw_result(image: np.ndarray, result: FrameResult) -> np.ndarray:
    """A copy of the frame with detector boxes (orange, labelled class and score), refined boxes (green) and a legend."""
    canvas = image.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 640))
    objects = result.objects
    detections = objects.detections
    tracks = result.tracks
    shown = tracks.boxes if tracks is not None and tracks.smoothed else objects.refined_boxes
    for index, (box, refined, status) in enumerate(zip(detections.boxes, shown, objects.status, strict=True)):
        _rectangle(canvas, box, DETECTOR_COLOUR, thickness)
        if status in (RefineStatus.REFINED, RefineStatus.REUSED):
            _rectangle(canvas, refined, REFINED_COLOUR, thickness)
        if _has_room_for_text(canvas):
            name = detections.class_names[detections.class_ids[index]]
            track = "" if tracks is None or tracks.ids[index] == NO_TRACK else f"#{tracks.ids[index]} "
            _box_label(canvas, box, f"{track}{name} {detections.scores[index]:.2f}")
    if _has_room_for_text(canvas):
        draw_legend(canvas)
    return canvas


def draw_legend(canvas: np.ndarray, origin: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Two swatches in the top-left corner: which colour is the detector's box and which the refined box."""
    x, y = origin
    cv2.rectangle(canvas, (x, y), (x + 178, y + 40), (0, 0, 0), -1)
    for row, (colour, text) in enumerate(((DETECTOR_COLOUR, "detector box"), (REFINED_COLOUR, "refined box"))):
        top = y + 6 + row * 17
        cv2.rectangle(canvas, (x + 6, top), (x + 26, top + 11), colour, -1)
        cv2.putText(canvas, text, (x + 34, top + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


class AnnotatedVideoSink:
    """annotated.mp4 (mp4v): opened at the first frame, whose size fixes the video's size."""

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = Path(path)
        self.fps = fps or DEFAULT_VIDEO_FPS
        self._writer: cv2.VideoWriter | None = None

    def write(self, result: FrameResult) -> None:
        image = result.frame.image
        if self._writer is None:
            height, width = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self._writer.isOpened():
                raise OSError(f"OpenCV cannot write {self.path}; check disk space and the output folder")
        self._writer.write(draw_result(image, result))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


class WindowSink:
    """--show: the annotated frame in a window; q or Esc asks the run to stop."""

    def __init__(self, request_stop: Callable[[], None], title: str = "BBRefinement-RT") -> None:
        self._request_stop = request_stop
        self._title = title

    def write(self, result: FrameResult) -> None:
        cv2.imshow(self._title, draw_result(result.frame.image, result))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self._request_stop()

    def close(self) -> None:
        cv2.destroyWindow(self._title)


def display_available() -> bool:
    """cv2.imshow needs a display server on Linux; Windows and macOS always have one."""
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class ProgressSink:
    """A tqdm bar for sources of known length, a live FPS line (once a second) for streams."""

    def __init__(self, total: int | None, dropped: Callable[[], int], stream: TextIO = sys.stderr) -> None:
        self._dropped = dropped
        self._stream = stream
        self._bar = None
        if total is not None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="frame", file=stream, dynamic_ncols=True)
        self._count = 0
        self._started = time.monotonic()
        self._last_line = self._started

    def write(self, result: FrameResult) -> None:
        self._count += 1
        if self._bar is not None:
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self._last_line >= 1.0:
            self._last_line = now
            fps = self._count / max(now - self._started, 1e-9)
            self._stream.write(f"\r{self._count} frames  {fps:.1f} FPS  {self._dropped()} dropped ")
            self._stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._count:
            self._stream.write("\n")


def write_summary(path: Path, summary: dict) -> Path:
    """Write JSON atomically: a temp file beside the target, then rename over it."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def _box(box: np.ndarray) -> list[float]:
    return [round(float(v), 2) if math.isfinite(v) else None for v in box]


def _has_room_for_text(canvas: np.ndarray) -> bool:
    """Labels and the legend would hide a thumbnail-sized frame; they are drawn from 320 x 180 up."""
    return canvas.shape[1] >= 320 and canvas.shape[0] >= 180


def _box_label(canvas: np.ndarray, box: np.ndarray, text: str) -> None:
    """Class and score on a filled tag above the box's top-left corner (inside the frame)."""
    if not np.isfinite(box).all():
        return
    (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    x = int(np.clip(box[0], 0, max(canvas.shape[1] - width - 4, 0)))
    y = int(np.clip(box[1], height + 4, canvas.shape[0]))
    cv2.rectangle(canvas, (x, y - height - 4), (x + width + 4, y), DETECTOR_COLOUR, -1)
    cv2.putText(canvas, text, (x + 2, y - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)


def _rectangle(canvas: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    if not np.isfinite(box).all():
        return
    limit = 1 << 15  # cv2 drawing takes int32 points; keep absurd boxes from overflowing
    x1, y1, x2, y2 = (round(float(np.clip(v, -limit, limit))) for v in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
