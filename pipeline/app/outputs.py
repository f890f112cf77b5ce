"""Where a run writes: the output folder (checked before any work) and the sinks of one or many streams.

Every sink takes every result (FrameResult.stream says its stream); videos and windows are one per
stream behind a PerStream router. One stream writes annotated.mp4 and untagged detections.jsonl
lines, as it always has; many streams write annotated-<i>.mp4 and tag each line `"stream": i`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from pipeline.app.summary import DETECTIONS_FILE, video_names
from pipeline.core.errors import UsageError
from pipeline.io.sinks import AnnotatedVideoSink, FileSink, JsonlSink, PerStream, ProgressSink, Sink, WindowSink, display_available
from pipeline.io.sources import FrameSource

WINDOW_TITLE = "BBRefinement-RT"


def choose_output_dir(requested: Path | None) -> Path:
    """The requested folder if new or empty, else a fresh runs/<timestamp>[-n]/; never an old run."""
    if requested is not None:
        requested = Path(requested)
        if requested.exists() and (not requested.is_dir() or any(requested.iterdir())):
            raise UsageError(f"output {requested} already exists and is not empty; choose a new --output folder")
        return requested
    stem = Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, suffix = stem, 1
    while candidate.exists():
        candidate, suffix = stem.with_name(f"{stem.name}-{suffix}"), suffix + 1
    return candidate


def check_writable(output_dir: Path, min_free_mb: float) -> None:
    """Fail before any work if the outputs cannot be written: no permission, not a folder, or a full disk."""
    ancestor = Path(output_dir).absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"output {output_dir} is inside {ancestor}, which is a file; choose another --output folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise UsageError(f"cannot write in {ancestor} ({error.strerror}); choose another --output folder") from None
    free_mb = shutil.disk_usage(ancestor).free / 2**20
    if free_mb < min_free_mb:
        raise UsageError(
            f"only {free_mb:.0f} MB free in {ancestor} (need {min_free_mb:.0f} MB); free some space or choose another --output folder"
        )


def file_sinks(output_dir: Path, sources: Sequence[FrameSource]) -> list[Sink]:
    """detections.jsonl and one annotated video per stream, in a folder made here."""
    output_dir.mkdir(parents=True, exist_ok=True)
    videos = [AnnotatedVideoSink(output_dir / name, source.fps) for name, source in zip(video_names(len(sources)), sources, strict=True)]
    return [JsonlSink(output_dir / DETECTIONS_FILE, tag_stream=len(sources) > 1), PerStream(videos)]


def file_reports(sinks: Sequence[Sink]) -> Callable[[], dict[str, dict]]:
    """For summary.json's `files`: per output file (by name), the frames it holds and the error that stopped it."""
    files = [sink for item in sinks for sink in getattr(item, "sinks", (item,)) if isinstance(sink, FileSink)]
    return lambda: {sink.path.name: sink.report() for sink in files}


def window_sink(streams: int, request_stop: Callable[[], None]) -> Sink | None:
    """--show: a window per stream (q stops the run); None, with a warning, where there is no display."""
    if not display_available():
        print("warning: --show ignored: no display found (DISPLAY is not set)", file=sys.stderr, flush=True)
        return None
    titles = [WINDOW_TITLE] if streams == 1 else [f"{WINDOW_TITLE} stream {index}" for index in range(streams)]
    return PerStream([WindowSink(request_stop, title) for title in titles])


def progress_sink(sources: Sequence[FrameSource], max_frames: int | None, dropped: Callable[[], int]) -> Sink:
    """A bar over every stream's frames where all their lengths are known, else a live FPS line."""
    lengths = [source.frame_count for source in sources]
    total = None
    if all(length is not None for length in lengths):
        total = sum(length if max_frames is None else min(length, max_frames) for length in lengths)
    return ProgressSink(total, dropped)
