"""Croppers: frame + integer windows -> one uint8 (N, S, S, 3) batch, the engine's raw input.

The CPU path slices the window out of the frame and resizes it with cv2.resize straight into a
preallocated batch (OpenCV releases the GIL, so a thread pool runs crops in parallel). A warp is
needed only where a window leaves the frame, and then a constant border is added instead.
The GPU path (pipeline/refine/gpu_crops.py) samples the same bilinear grid with one torch grid_sample
call (pixel edges map to pixel edges as in cv2.resize), so both croppers feed the refiner the same
pixels, within one grey level.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from itertools import count as count_from

import cv2
import numpy as np

from pipeline.core.geometry import FILL_VALUE


def crop_one(frame: np.ndarray, window: np.ndarray, out: np.ndarray) -> None:
    """Resize frame[window] into `out` (S, S, 3) uint8, filling outside the frame with FILL_VALUE."""
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in window)
    size = out.shape[1], out.shape[0]
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if ix2 <= ix1 or iy2 <= iy1:
        out[...] = FILL_VALUE
        return
    region = frame[iy1:iy2, ix1:ix2]
    if (ix1, iy1, ix2, iy2) != (x1, y1, x2, y2):
        region = cv2.copyMakeBorder(
            region, iy1 - y1, y2 - iy2, ix1 - x1, x2 - ix2, cv2.BORDER_CONSTANT, value=(FILL_VALUE,) * 3
        )
    cv2.resize(region, size, dst=out, interpolation=cv2.INTER_LINEAR)


class CpuCropper:
    """Crops every window of a frame into a reused batch buffer, optionally on a thread pool."""

    def __init__(self, input_size: int, workers: int = 1, capacity: int = 32) -> None:
        self.input_size = input_size
        self.workers = max(1, workers)
        # The calling thread crops too, so `workers` threads in all need a pool of one fewer.
        self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="crop") if self.workers > 1 else None
        self._buffer = np.empty((capacity, input_size, input_size, 3), dtype=np.uint8)

    def crop(self, frame: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """Return an (N, S, S, 3) uint8 view of the internal buffer; valid until the next call.

        `frame` is a Frame's image (H x W x 3 uint8 BGR, checked when the Frame was made).
        """
        count = len(windows)
        if count > len(self._buffer):
            self._buffer = np.empty((count, self.input_size, self.input_size, 3), dtype=np.uint8)
        batch = self._buffer[:count]

        if self._pool is None or count < 2:
            for window, out in zip(windows, batch):
                crop_one(frame, window, out)
            return batch
        # Crops are claimed one at a time from a shared counter (next() on itertools.count is atomic
        # under the GIL): a helper that wakes late, or whose core is busy, takes fewer crops instead of
        # holding up the frame, so a frame costs at most about the calling thread cropping alone.
        claims = count_from(0)

        def crop_claimed() -> None:
            while (index := next(claims)) < count:
                crop_one(frame, windows[index], batch[index])

        helpers = [self._pool.submit(crop_claimed) for _ in range(min(self.workers - 1, count - 1))]
        try:
            crop_claimed()
        finally:  # even when this thread fails, no helper may still write once the buffer is reused
            wait(helpers)
        for helper in helpers:
            helper.result()  # re-raises a helper's error
        return batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
