"""Streams into one pipeline: a reader thread per source, cycles of frames out (nvstreammux's idea).

Every run goes through here; one stream is a mux of one (a cycle is then one frame, closed as soon
as it arrives).

A cycle holds at most one frame per stream. It closes when every stream still running has a
frame, or `batch_timeout` seconds after its first frame arrived (nvstreammux's batched-push
timeout), so one slow or stalled camera delays the others by at most that much. The pipeline then
detects each frame of the cycle and refines all their crops in one batched backend call.

File streams are lossless: a reader blocks while its queue is full. Live streams drop their oldest
queued frame instead, counted per stream. A stream that ends, or fails (a live one after its
reconnect back-off, see pipeline.io.sources.Reconnect), leaves the cycles; the others go on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

from pipeline.app.stages import END, POLL_SECONDS, THREAD_PREFIX, LatencyRecorder, closing_iterator, put_dropping_oldest, put_until_stopped
from pipeline.core.types import Frame
from pipeline.io.sources import FrameSource

DEFAULT_BATCH_TIMEOUT_MS = 50.0  # a little over one frame interval of a 25-30 fps camera


@dataclass(frozen=True)
class StreamFrame:
    """A frame, the stream it came from (index in the source list) and when its reader got it."""

    stream: int
    frame: Frame
    read_at: float  # time.perf_counter(): per-stream latency runs from here to the written result


@dataclass
class StreamStats:
    """One stream's counts: its reader writes read/dropped/error, the pipeline's write stage done/latency."""

    read: int = 0
    dropped: int = 0
    done: int = 0
    error: BaseException | None = None  # what ended the stream, if it did not just end
    last_done_at: float | None = None  # time.perf_counter() of its last written frame
    latency: LatencyRecorder = field(default_factory=LatencyRecorder)  # read -> written
    decoding: LatencyRecorder = field(default_factory=LatencyRecorder)  # the source's own time per frame

    def written(self, item: StreamFrame) -> None:
        """Count a written frame of this stream; called by the write stage only."""
        self.last_done_at = time.perf_counter()
        self.done += 1
        self.latency.add(self.last_done_at - item.read_at)


class StreamMux:
    """Iterate for cycles: lists of StreamFrames, one per stream at most, in stream order.

    `max_frames` limits every stream. Iterate once; `interrupt` (any thread) ends the iteration.
    """

    def __init__(
        self, sources: Sequence[FrameSource], batch_timeout_s: float, queue_size: int, max_frames: int | None = None
    ) -> None:
        if not sources:
            raise ValueError("a stream multiplexer needs at least one source")
        self.sources = tuple(sources)
        self.stats = [StreamStats() for _ in self.sources]
        self.cycles = 0
        self._timeout = batch_timeout_s
        self._max_frames = max_frames
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=queue_size) for _ in self.sources]
        self._arrived = threading.Event()  # set by a reader after each put: the cycle wait wakes at once
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __iter__(self) -> Iterator[list[StreamFrame]]:
        if self._threads:
            raise RuntimeError("a stream multiplexer runs once; build a new one")
        self._threads = [
            threading.Thread(target=self._read, args=(stream,), name=f"{THREAD_PREFIX}read-{stream}", daemon=True)
            for stream in range(len(self.sources))
        ]
        for thread in self._threads:
            thread.start()
        running = set(range(len(self.sources)))
        try:
            while running and not self._stop.is_set():
                cycle = self._collect(running)
                if cycle:
                    self.cycles += 1
                    yield cycle
        finally:
            self.interrupt()
            for thread in self._threads:
                thread.join(POLL_SECONDS * 4)  # daemons: one stuck in a camera read must not hold the run

    def written(self, item: StreamFrame) -> None:
        """Count a frame as done in its stream's figures; called by the run's write stage only."""
        self.stats[item.stream].written(item)

    def frames_dropped(self) -> int:
        """Frames the live streams dropped so far, over every stream."""
        return sum(stats.dropped for stats in self.stats)

    def interrupt(self) -> None:
        """Stop the readers and cut short any reconnect back-off; safe from any thread."""
        self._stop.set()
        for source in self.sources:
            source.interrupt()

    def _collect(self, running: set[int]) -> list[StreamFrame]:
        """The next cycle; `running` loses the streams whose end marker was taken."""
        cycle: dict[int, StreamFrame] = {}
        deadline: float | None = None
        while not self._stop.is_set():
            self._arrived.clear()  # before looking: a frame put after this wakes the wait below
            for stream in sorted(running - cycle.keys()):
                try:
                    item = self._queues[stream].get_nowait()
                except queue.Empty:
                    continue
                if item is END:
                    running.discard(stream)
                else:
                    cycle[stream] = item
            if not running - cycle.keys():
                break
            now = time.monotonic()
            if cycle and deadline is None:
                deadline = now + self._timeout
            if deadline is not None and now >= deadline:
                break
            self._arrived.wait(POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - now))
        return [cycle[stream] for stream in sorted(cycle)]

    def _read(self, stream: int) -> None:
        """One stream's reader thread; an error ends this stream only (kept in its stats)."""
        source, stats, box = self.sources[stream], self.stats[stream], self._queues[stream]
        try:
            with closing_iterator(source) as frames:
                started = time.perf_counter()
                for frame in islice(frames, self._max_frames):
                    read_at = time.perf_counter()
                    stats.read += 1
                    stats.decoding.add(read_at - started)
                    item = StreamFrame(stream, frame, read_at)
                    if source.live:
                        stats.dropped += put_dropping_oldest(box, item)
                    elif not put_until_stopped(box, item, self._stop):
                        return
                    self._arrived.set()
                    started = time.perf_counter()
        except Exception as error:  # a dead stream must not stop the others
            stats.error = error
        put_until_stopped(box, END, self._stop)
        self._arrived.set()
