"""A ring of CPU croppers, so a batch stays intact while the next frames are cropped.

CpuCropper.crop returns a view of its own buffer, which its next call overwrites. With cropping
and refining in separate threads, a batch is alive from its crop until the refine stage is done
with it: waiting in the queue between the two stages (at most `queue_size` batches), being
refined (one) and, meanwhile, the next batch is being cropped (one). A ring of queue_size + 2
croppers used in turn therefore never overwrites a batch still in use, without copying crops.
"""

from __future__ import annotations

from itertools import cycle

import numpy as np

from pipeline.refine.crops import CpuCropper


class CropperRing:
    """Round-robin over queue_size + 2 CpuCroppers; same crop/close interface as one cropper."""

    def __init__(self, input_size: int, workers: int, queue_size: int) -> None:
        self._croppers = [CpuCropper(input_size, workers=workers) for _ in range(queue_size + 2)]
        self._next = cycle(self._croppers)

    def crop(self, frame: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """The batch stays valid until queue_size + 2 further calls."""
        return next(self._next).crop(frame, windows)

    def close(self) -> None:
        for cropper in self._croppers:
            cropper.close()
