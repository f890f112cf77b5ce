"""Frame sources: video files, image folders, cameras and network streams behind one iterator.

Every source yields `Frame`s in order. File-like sources (videos, image folders) are *lossless*:
the pipeline blocks the reader when it falls behind. Cameras and URLs are *live*: they do not
wait for us, so the pipeline drops the oldest queued frame instead (see pipeline.app.stages).

A live stream that drops is reopened with back-off (`Reconnect`); the frames it would have sent
meanwhile are estimated from the gap and its fps and counted, so a summary says what was missed.
A video file that fails to decode part-way (truncated, corrupt) ends at its last good frame, and
`ended_early` says so: a long recording with a bad tail still yields everything before it. An image
folder skips an image that does not decode (counted in `frames_unreadable`, named in `warnings()`):
one bad file in a thousand must not throw the other 999 away.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.errors import SourceError
from pipeline.core.types import Frame

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class FrameSource(ABC):
    """Base of every source: iterate for frames; `live` tells the pipeline whether it may drop."""

    live: bool = False
    fps: float | None = None
    frame_count: int | None = None  # known length (for a progress bar), None for streams
    description: str = ""
    reconnects: int = 0  # times a dropped live stream was reopened
    frames_lost: int = 0  # frames a live stream sent while it was down (estimated from its fps)
    ended_early: bool = False  # a file stopped decoding before its known frame count
    frames_unreadable: int = 0  # images of a folder that did not decode and were skipped

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]: ...

    def interrupt(self) -> None:
        """Cut short any wait inside the source (a reconnect back-off); called when the run stops."""

    def health(self) -> dict[str, int | bool]:
        """What went wrong while reading, for summary.json (frames lost are counted under "frames")."""
        return {"reconnects": self.reconnects, "ended_early": self.ended_early}

    def warnings(self, frames_read: int) -> list[str]:
        """What a user should know about this source's frames after a run that read `frames_read` of them,
        each a sentence without its subject (the run names the stream)."""
        if not self.ended_early:
            return []
        return [f"stopped decoding after {frames_read} of its {self.frame_count} frames (truncated or corrupt); "
                "results cover the frames before"]


@dataclass(frozen=True)
class Reconnect:
    """How a dropped live stream is retried: `tries` reopen attempts, delays doubling up to `max_delay` s."""

    tries: int = 5
    first_delay: float = 0.5
    max_delay: float = 8.0

    def delays(self) -> list[float]:
        return [min(self.first_delay * 2**attempt, self.max_delay) for attempt in range(self.tries)]


def quiet_capture(target: str | int) -> cv2.VideoCapture:
    """cv2.VideoCapture without OpenCV's log lines: a missing camera prints a dozen backend warnings and
    exception dumps that would bury our one-line error (stream failures are reported by the caller)."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(previous)


class CaptureSource(FrameSource):
    """Anything cv2.VideoCapture opens: a video file, a camera index or a stream URL."""

    def __init__(
        self,
        target: str | int,
        live: bool,
        reconnect: Reconnect | None = None,
        opener: Callable[[str | int], cv2.VideoCapture] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: seconds, for the time a live stream was down (tests pass one that advances by fixed steps)."""
        self._target = target
        self._clock = clock
        self.live = live
        self.reconnect = reconnect or Reconnect()
        opener = opener or quiet_capture
        self._opener = opener
        self._interrupted = threading.Event()
        self.description = f"camera {target}" if isinstance(target, int) else str(target)
        capture = opener(target)
        if not capture.isOpened():
            raise SourceError(f"cannot open {self.description}; {_open_hint(target)}")
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if np.isfinite(fps) and 0 < fps < 1000 else None
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 and not live else None
        self._capture = capture

    def __iter__(self) -> Iterator[Frame]:
        """Yield frames until the capture ends; the capture is released when iteration stops."""
        capture, self._capture = self._capture, None
        if capture is None:
            raise SourceError(f"{self.description} can be read only once")
        stem = Path(str(self._target)).name
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    if not self.live:
                        self.ended_early = self.frame_count is not None and index < self.frame_count
                        return
                    capture.release()
                    capture = self._reopen(index)
                    if capture is None:
                        return
                    continue
                timestamp = time.time() if self.live else (index / self.fps if self.fps else None)
                yield Frame(index, image, timestamp, f"{stem}#{index}")
                index += 1
        finally:
            if capture is not None:
                capture.release()

    def interrupt(self) -> None:
        self._interrupted.set()

    def _reopen(self, frame_index: int) -> cv2.VideoCapture | None:
        """Reopen a dropped live stream with back-off; None if interrupted meanwhile; SourceError if it stays down."""
        dropped_at = self._clock()
        for delay in self.reconnect.delays():
            if self._interrupted.wait(delay):
                return None
            capture = self._opener(self._target)
            if capture.isOpened():
                self.reconnects += 1
                self.frames_lost += round((self._clock() - dropped_at) * self.fps) if self.fps else 0
                return capture
            capture.release()
        waited = self._clock() - dropped_at
        raise SourceError(
            f"{self.description} dropped after frame {frame_index} and did not come back in {self.reconnect.tries} "
            f"tries over {waited:.1f} s; {_open_hint(self._target)}, then run again"
        )


class ImageFolderSource(FrameSource):
    """The image files of one folder, in file-name order (name them with zero-padded numbers).

    An image that does not decode (empty, truncated, not an image) is skipped and remembered; the
    frames that follow keep consecutive indices and are named by their file.
    """

    UNREADABLE_NAMED = 5  # how many skipped files a warning names (the count is always complete)

    def __init__(self, folder: Path) -> None:
        self._paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self._paths:
            raise SourceError(f"folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); point --source at images")
        self.frame_count = len(self._paths)
        self.description = str(folder)
        self.unreadable: list[Path] = []

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for path in self._paths:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.unreadable.append(path)
                self.frames_unreadable += 1
                continue
            yield Frame(index, image, None, str(path))
            index += 1

    def warnings(self, frames_read: int) -> list[str]:
        if not self.unreadable:
            return []
        named = ", ".join(path.name for path in self.unreadable[: self.UNREADABLE_NAMED])
        more = len(self.unreadable) - self.UNREADABLE_NAMED
        named += f" and {more} more" if more > 0 else ""
        return [f"skipped {self.frames_unreadable} image(s) that did not decode ({named}); remove or replace them"]


def open_source(text: str) -> FrameSource:
    """Open SRC as the CLI reads it: digits = camera, URL = live stream, folder = images, else a video."""
    if text.isdigit():
        return CaptureSource(int(text), live=True)
    if text.lower().startswith(URL_SCHEMES):
        return CaptureSource(text, live=True)
    path = Path(text)
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        return CaptureSource(str(path), live=False)
    raise SourceError(f"source {text!r} is not a video file, image folder, camera index or URL; check the path")


def _open_hint(target: str | int) -> str:
    if isinstance(target, int):
        return "check the camera is connected and not used by another program"
    if str(target).lower().startswith(URL_SCHEMES):
        return "check the URL and that the stream is reachable"
    return "is it a video OpenCV can decode (mp4, avi, mkv)?"
