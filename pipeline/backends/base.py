"""The one interface every refinement runtime implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from pipeline.core.spec import RefinerSpec


class RefinerBackend(ABC):
    """Runs a refiner: raw uint8 NHWC BGR crops + mixture vectors -> window-coordinate outputs.

    `refine` accepts any batch size: batches above `max_batch` are split and results kept in
    order; an empty batch returns an empty (0, spec.output_size) array.
    """

    name: str = "base"
    device: object = "cpu"  # where it computes: "cpu", or a torch device for the CUDA backends

    def __init__(self, spec: RefinerSpec, max_batch: int) -> None:
        self.spec = spec
        self.max_batch = max_batch

    def refine(self, crops: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        size = self.spec.input_size
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 (N, {size}, {size}, 3); got {crops.dtype} {crops.shape}")
        if vectors.shape != (len(crops), self.spec.vector_size):
            raise ValueError(f"vectors must be ({len(crops)}, {self.spec.vector_size}); got {vectors.shape}")
        if len(crops) == 0:
            return np.zeros((0, self.spec.output_size), dtype=np.float32)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        chunks = [
            self._run(np.ascontiguousarray(crops[start : start + self.max_batch]), vectors[start : start + self.max_batch])
            for start in range(0, len(crops), self.max_batch)
        ]
        return np.concatenate(chunks, axis=0).astype(np.float32, copy=False)

    @abstractmethod
    def _run(self, crops: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Run one batch of at most max_batch crops; returns (N, spec.output_size) float32."""

    def close(self) -> None:
        """Release runtime resources (sessions, contexts, buffers)."""
