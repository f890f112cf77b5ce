"""Stages in threads joined by bounded queues, with one stop event and first-error capture.

Threads suffice because the heavy calls (OpenCV decoding and resizing, torch, ONNX Runtime,
TensorRT) release the GIL, so a slow stage overlaps with the others instead of serialising them.
Each stage is a single thread, so items leave in the order they entered. Queues are bounded, so a
slow stage back-pressures the reader and memory stays flat: the reader blocks when the first queue
is full (a live camera's frames are dropped before that, by its own reader in pipeline.app.streams).

Every blocking queue call polls the stop event, so all threads end within one poll interval plus
the duration of the call they are in. The first exception in any stage is kept, stops every stage,
and is reported once by whoever runs the pipeline.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

POLL_SECONDS = 0.05
READ_STAGE = "read"
END_TO_END = "end_to_end"
THREAD_PREFIX = "stage-"  # thread names, so a test (or a debugger) can find leftover stage threads
END = object()  # end of stream marker, travels through a queue behind the last item
_STOPPED = object()  # returned by a queue wait that was cut short by the stop event


@dataclass(frozen=True)
class Stage:
    """A named step: `work` maps one item to the next stage's item (the last stage's result is dropped)."""

    name: str
    work: Callable[[Any], Any]

    def __post_init__(self) -> None:
        if not self.name or self.name in (READ_STAGE, END_TO_END):
            raise ValueError(f"stage name {self.name!r} is empty or reserved")


@dataclass(frozen=True)
class StageFailure:
    """The first exception raised in any stage, and where."""

    stage: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.stage} stage failed: {self.error}"


class LatencyRecorder:
    """Per-item durations of one stage; percentiles over the most recent `keep` items.

    Bounded so that a camera running for days does not grow memory; written by one thread only.
    """

    def __init__(self, keep: int = 10_000) -> None:
        self._samples: deque[float] = deque(maxlen=keep)
        self.count = 0

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.count += 1

    def summary(self) -> dict[str, float | int | None]:
        samples = sorted(self._samples)
        return {"count": self.count, "p50_ms": _percentile_ms(samples, 0.50), "p95_ms": _percentile_ms(samples, 0.95)}


class DepthRecorder:
    """How full a stage's inbox was each time the stage took an item (mean, max), to find the bottleneck.

    A stage whose inbox is usually full is slower than what feeds it; an empty one is waiting.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._total = 0
        self._count = 0
        self._max = 0

    def add(self, depth: int) -> None:
        self._total += depth
        self._count += 1
        self._max = max(self._max, depth)

    def summary(self) -> dict[str, float | int | None]:
        mean = round(self._total / self._count, 3) if self._count else None
        return {"capacity": self.capacity, "mean": mean, "max": self._max}


class StagePipeline:
    """Reads `source` in one thread and runs each stage in its own thread, in order; nothing is lost.

    `read_ahead`: how many items the reader may queue for the first stage (default `queue_size`). A
    source with queues of its own (StreamMux) takes 1, so frames wait once, where a live stream can
    drop its oldest, instead of twice.
    """

    def __init__(self, source: Iterable[Any], stages: Sequence[Stage], queue_size: int = 4, read_ahead: int | None = None) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique; got {names}")
        self.stop_event = threading.Event()
        self.latency = {name: LatencyRecorder() for name in (READ_STAGE, *names, END_TO_END)}
        sizes = [read_ahead or queue_size, *[queue_size] * (len(stages) - 1)]
        self.queue_depth = {name: DepthRecorder(size) for name, size in zip(names, sizes, strict=True)}  # each stage's inbox
        self.frames_read = 0
        self.frames_done = 0
        self.failure: StageFailure | None = None
        self._source = source
        self._stages = tuple(stages)
        self._queues = [queue.Queue(maxsize=size) for size in sizes]
        self._failure_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("a pipeline runs once; build a new one")
        outboxes = [*self._queues[1:], None]
        self._threads = [self._thread(READ_STAGE, self._read, self._queues[0])]
        for stage, inbox, outbox in zip(self._stages, self._queues, outboxes, strict=True):
            self._threads.append(self._thread(stage.name, self._work, stage, inbox, outbox))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ask every stage to finish; safe from any thread and from signal handlers."""
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds for every thread; True when all have finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not self.running_stages()

    def running_stages(self) -> list[str]:
        return [thread.name.removeprefix(THREAD_PREFIX) for thread in self._threads if thread.is_alive()]

    def run(self) -> StageFailure | None:
        """Run to the end (or the first failure) in the calling thread's time; returns the failure."""
        self.start()
        self.wait()
        return self.failure

    def _thread(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        # Daemon threads: a stage stuck in a blocking call (a dead camera) must not keep the process alive.
        return threading.Thread(target=self._guard, args=(name, target, *args), name=THREAD_PREFIX + name, daemon=True)

    def _guard(self, name: str, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except BaseException as error:  # any failure must stop every stage
            with self._failure_lock:
                if self.failure is None:
                    self.failure = StageFailure(name, error)
            self.stop_event.set()

    def _read(self, outbox: queue.Queue) -> None:
        with closing_iterator(self._source) as iterator:
            while not self.stop_event.is_set():
                started = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                read_at = time.perf_counter()
                self.latency[READ_STAGE].add(read_at - started)
                self.frames_read += 1
                if not put_until_stopped(outbox, (read_at, item), self.stop_event):
                    return
            put_until_stopped(outbox, END, self.stop_event)

    def _work(self, stage: Stage, inbox: queue.Queue, outbox: queue.Queue | None) -> None:
        recorder, depth = self.latency[stage.name], self.queue_depth[stage.name]
        while True:
            packet = self._get(inbox)
            if packet is _STOPPED:
                return
            if packet is END:
                if outbox is not None:
                    put_until_stopped(outbox, END, self.stop_event)
                return
            depth.add(inbox.qsize() + 1)  # items waiting when this one was taken, itself included
            read_at, item = packet
            started = time.perf_counter()
            result = stage.work(item)
            finished = time.perf_counter()
            recorder.add(finished - started)
            if outbox is None:
                self.latency[END_TO_END].add(finished - read_at)
                self.frames_done += 1
            elif not put_until_stopped(outbox, (read_at, result), self.stop_event):
                return

    def _get(self, box: queue.Queue) -> Any:
        while not self.stop_event.is_set():
            try:
                return box.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
        return _STOPPED


@contextmanager
def closing_iterator(iterable: Iterable[Any]) -> Iterator[Iterator[Any]]:
    """Iterate `iterable` and close its iterator however reading ends: a source's generator releases its capture."""
    iterator = iter(iterable)
    try:
        yield iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def put_until_stopped(box: queue.Queue, packet: Any, stop: threading.Event) -> bool:
    """Block until the queue takes the packet (True) or `stop` is set (False): a stopped run never hangs on a full queue."""
    while not stop.is_set():
        try:
            box.put(packet, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def put_dropping_oldest(box: queue.Queue, packet: Any) -> int:
    """Never blocks: when the queue is full, the oldest item goes (the caller is its only producer). Returns items dropped."""
    dropped = 0
    while True:
        try:
            box.put_nowait(packet)
            return dropped
        except queue.Full:
            try:
                box.get_nowait()
                dropped += 1
            except queue.Empty:
                pass


def _percentile_ms(sorted_samples: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile in milliseconds; None without samples."""
    if not sorted_samples:
        return None
    rank = max(0, math.ceil(fraction * len(sorted_samples)) - 1)
    return round(sorted_samples[rank] * 1000.0, 3)
