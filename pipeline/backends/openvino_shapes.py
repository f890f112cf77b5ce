"""Static-shape copies of an OpenVINO model for the batch sizes a run keeps asking for.

Why: OpenVINO runs a dynamic-batch model 15-40% slower than the same model compiled for one fixed
batch (shape inference and buffer management on every call; kernels are the same; the gap is larger
when other work runs between calls). A compiled copy
costs ~50 MB plus ~1.5 MB per crop of memory and ~0.2 s of one core to compile, so only a few are
kept: a size gets its copy after it has been asked for `min_calls` times, up to `max_sizes` sizes,
compiled on a background thread. Until its copy is ready a size runs on the dynamic model, so no
call ever waits for a compile and a run whose batch sizes keep changing loses nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

log = logging.getLogger(__name__)

# One compile thread for the whole process, never ended: nothing to shut down per backend, and the
# compiles of every backend run one at a time (they would only compete for the cores).
_COMPILER: ThreadPoolExecutor | None = None
_COMPILER_LOCK = threading.Lock()

MIN_CALLS = 3  # a size asked for this often is likely to come again (a crowd's typical count, a benchmark's batch)
MAX_SIZES = 4  # ~0.3-0.5 GB of compiled copies at most for a 160 px Lite0 refiner


class StaticShapes:
    """Per batch size: a compiled model of exactly that size once it is ready, else None (use the dynamic one).

    `compile_for(size)` compiles the model reshaped to `size` rows (called on the background thread).
    """

    def __init__(self, compile_for: Callable[[int], Any], min_calls: int = MIN_CALLS, max_sizes: int = MAX_SIZES) -> None:
        self._compile_for = compile_for
        self.min_calls = min_calls
        self.max_sizes = max_sizes
        self._calls: Counter[int] = Counter()
        self._compiles: dict[int, Future] = {}
        self._lock = threading.Lock()

    def compiled(self, size: int) -> Any | None:
        """The static model for `size` if ready; counts the call and starts a compile when the size has earned one."""
        with self._lock:
            future = self._compiles.get(size)
            if future is None:
                self._calls[size] += 1
                if self._calls[size] >= self.min_calls and len(self._compiles) < self.max_sizes:
                    self._compiles[size] = compiler().submit(self._compile_or_none, size)
                return None
        return future.result() if future.done() else None

    def _compile_or_none(self, size: int) -> Any | None:
        try:
            return self._compile_for(size)
        except Exception as error:  # noqa: BLE001 - the dynamic model still serves this size
            log.warning("OpenVINO could not compile the %d-crop model (%s); that batch size stays dynamic", size, error)
            return None

    def ready_sizes(self) -> list[int]:
        """Sizes whose static model is compiled (failed compiles are not: those sizes stay dynamic)."""
        with self._lock:
            futures = dict(self._compiles)
        return sorted(size for size, future in futures.items() if future.done() and future.result() is not None)

    def wait(self) -> None:
        """Block until every started compile has finished (benchmarks: time the steady state, not the compiles)."""
        with self._lock:
            futures = list(self._compiles.values())
        for future in futures:
            future.result()

    def close(self) -> None:
        """Drop the compiled copies: a compile not started yet is cancelled, one under way is waited for, so
        nothing of a closed backend still runs in OpenVINO."""
        with self._lock:
            futures = list(self._compiles.values())
            self._compiles.clear()
            self.max_sizes = 0  # a closed backend starts no more compiles
        for future in futures:
            if not future.cancel():
                future.result()


def compiler() -> ThreadPoolExecutor:
    """The process's one compile thread (see _COMPILER)."""
    global _COMPILER
    with _COMPILER_LOCK:
        if _COMPILER is None:
            _COMPILER = ThreadPoolExecutor(1, thread_name_prefix="openvino-compile")
        return _COMPILER
