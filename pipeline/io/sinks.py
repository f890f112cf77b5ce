"""Where results go: detections.jsonl, annotated.mp4, a window, a progress line, summary.json.

Every file sink writes as it goes (JSONL is flushed per frame, the video writer appends), so a
run that is interrupted or fails keeps every frame it finished. summary.json is written with
temp file + rename, so a reader never sees half of it.

A full disk or a file size limit (ulimit -f) is an OutputError naming the file and the cause, and
each file sink counts the frames it wrote (`frames_written`, `error`): detections.jsonl cuts a line
it could not finish back off, so it always ends on a whole line; OpenCV's video writer reports no
write errors at all, so the video sink stops *before* the room left would not hold the next frame
and the file's index, and the video of the frames before stays playable.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TextIO

import cv2
import numpy as np

from pipeline.core.errors import OutputError
from pipeline.core.types import NO_TRACK, FrameResult, RefineStatus

try:
    import resource  # Unix only: the per-file size limit (ulimit -f)
except ImportError:  # Windows has no such limit
    resource = None

DETECTOR_COLOUR = (0, 165, 255)  # BGR orange: the detector's box
REFINED_COLOUR = (80, 220, 60)  # BGR green: the refined box
DEFAULT_VIDEO_FPS = 30.0
# Room the video writer needs beyond the frames it holds: its unflushed output buffer (FFmpeg's is 32 KiB) and
# the mp4 index written at release (a few dozen bytes per frame), so a video stopped for lack of room plays.
VIDEO_RESERVE_BYTES = 256 * 1024
VIDEO_INDEX_BYTES_PER_FRAME = 64
WRITE_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "the file size limit (ulimit -f) is reached",
    errno.EDQUOT: "the disk quota is exceeded",
}


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


def write_failure(path: Path, cause: OSError | str) -> OutputError:
    """One line for an output that cannot be written: which file, why, and what to do."""
    if isinstance(cause, OSError):
        cause = WRITE_CAUSES.get(cause.errno, cause.strerror or str(cause))
    return OutputError(f"cannot write {path}: {cause}; free space (or raise the limit) and run again; frames written "
                       "before are kept")


class FileSink:
    """What every file sink reports for summary.json: frames written and the error that stopped it."""

    path: Path
    frames_written: int = 0
    error: str | None = None

    def report(self) -> dict[str, int | str | None]:
        return {"frames": self.frames_written, "error": self.error}

    def _failed(self, cause: OSError | str) -> OutputError:
        failure = write_failure(self.path, cause)
        self.error = str(failure)
        return failure


class JsonlSink(FileSink):
    """detections.jsonl: one line per frame, handed to the OS at once (unbuffered) so a crash loses nothing finished.

    A line that cannot be written whole is cut off again, so the file always ends on a whole line.

    `tag_stream`: tag each line with its stream (a run of many streams).
    """

    def __init__(self, path: Path, tag_stream: bool = False) -> None:
        self.path = Path(path)
        self.tag_stream = tag_stream
        self._file = self.path.open("xb", buffering=0)
        self._whole = 0  # bytes up to the end of the last whole line

    def write(self, result: FrameResult) -> None:
        if self.error is not None:
            raise OutputError(self.error)
        line = memoryview((json.dumps(frame_record(result, self.tag_stream), allow_nan=False) + "\n").encode("utf-8"))
        try:
            while line:  # a raw write may take part of the line (the last bytes below a limit)
                line = line[self._file.write(line) :]
        except OSError as error:
            self._file.truncate(self._whole)  # shrinking is allowed under any limit
            self._file.seek(self._whole)
            raise self._failed(error) from error
        self._whole = self._file.tell()
        self.frames_written += 1

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


class AnnotatedVideoSink(FileSink):
    """annotated.mp4 (mp4v): opened at the first frame, whose size fixes the video's size (later frames of another
    size, from an image folder, are resized to it).

    Before each frame the room left (free disk space, the file size limit) must hold the largest frame
    written so far twice over plus VIDEO_RESERVE_BYTES and the index; otherwise the sink stops there.
    """

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = Path(path)
        self.fps = fps or DEFAULT_VIDEO_FPS
        self._writer: cv2.VideoWriter | None = None
        self._largest_step = 0  # most bytes the file grew by in one frame (the writer flushes in blocks)
        self._size = 0

    def write(self, result: FrameResult) -> None:
        if self.error is not None:
            raise OutputError(self.error)
        image = result.frame.image
        if self._writer is None:
            height, width = self._size_hw = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self._writer.isOpened():
                raise self._failed("OpenCV cannot open it for writing (check the output folder)")
        self._check_room()
        canvas = draw_result(image, result)
        if canvas.shape[:2] != self._size_hw:  # OpenCV drops a frame of another size without a word (image folders)
            canvas = cv2.resize(canvas, self._size_hw[::-1], interpolation=cv2.INTER_AREA)
        self._writer.write(canvas)
        size = self.path.stat().st_size
        self._largest_step = max(self._largest_step, size - self._size)
        self._size = size
        self.frames_written += 1

    def _check_room(self) -> None:
        needed = VIDEO_RESERVE_BYTES + 2 * self._largest_step + VIDEO_INDEX_BYTES_PER_FRAME * (self.frames_written + 1)
        free = shutil.disk_usage(self.path.parent).free
        if free < needed:
            raise self._failed(f"the disk is nearly full ({free // 1024} KiB left)")
        limit = file_size_limit()
        if limit - self._size < needed:
            raise self._failed(f"the file size limit (ulimit -f, {limit // 1024} KiB) is nearly reached")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def file_size_limit() -> float:
    """The process's largest file in bytes (RLIMIT_FSIZE, what ulimit -f sets); infinite where there is none."""
    if resource is None:
        return math.inf
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return math.inf if soft == resource.RLIM_INFINITY else float(soft)


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
