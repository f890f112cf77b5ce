"""The one interface every refinement runtime implements, and what the registry passes to each.

Why inputs are checked and batches chunked here only: every runtime then sees the same contract
(uint8 NHWC crops, float32 vectors, at most max_batch rows) and a new runtime writes one `_run`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from pipeline.core.errors import BackendError
from pipeline.core.spec import RefinerSpec

if TYPE_CHECKING:
    from pipeline.model.artifacts import ModelFile


# Largest |difference| from the FP32 torch model on random crops that a runtime may show: bounds that catch a
# broken build (wrong channel order, lost normalisation: ~0.1 everywhere), not accuracy claims.
FP32_TOLERANCE = 1e-4  # FP32 runtimes: only summation order differs
HALF_TOLERANCE = 5e-2  # FP16 arithmetic on a random-init network: ~1e-2 typical, a few outliers


class BackendUnavailable(BackendError):
    """This runtime or artifact is simply not here: `auto` moves on quietly instead of warning."""


CPU_PRECISIONS = ("bf16", "fp32")  # float precisions a CPU runtime may be asked for (OpenVINO; ONNX Runtime is fp32)


@dataclass(frozen=True)
class BackendOptions:
    """Settings only some runtimes read; the registry hands every runtime the same object.

    `threads`: the CPU runtimes' intra-op pool (None: `default_cpu_threads()`); `precision`: a CPU
    runtime's inference precision (None: the fastest the CPU supports; "fp32" forces full precision).
    """

    cuda_graphs: bool = False
    triton_url: str | None = None
    triton_model: str | None = None
    triton_timeout_s: float | None = None  # one batch's deadline on the server (None: the client's default)
    threads: int | None = None
    precision: str | None = None
    device_named: bool = True  # False: the device was resolved from None, so a runtime may fall back to the CPU


def default_cpu_threads() -> int:
    """Half the cores, at least one: the one thread policy of the CPU runtimes.

    The pipeline's reader, detector and croppers run on the other half, and a refiner batch gains
    little past a few threads.
    """
    return max(1, (os.cpu_count() or 2) // 2)


class RefinerBackend(ABC):
    """Runs a refiner: raw uint8 NHWC BGR crops + mixture vectors -> window-coordinate outputs.

    `refine` accepts any batch size: batches above `max_batch` are split and results kept in
    order; an empty batch returns an empty (0, spec.output_size) array. Subclasses implement
    `_run` (one chunk); those that take other array types (torch tensors) override `_inputs`/`_join`.
    """

    name: str = "base"  # the registry's name for it (pipeline.backends.registry)
    device: Any = "cpu"  # where it computes: "cpu", or a torch device for the CUDA backends
    precision: str = "fp32"  # what it computes in: OpenVINO bf16 or fp32, a TensorRT engine its build's precision
    takes_device_tensors: ClassVar[bool] = False  # True: `refine` also takes torch tensors already on `device`
    parity_tolerance: float = FP32_TOLERANCE  # vs FP32 torch: what build_engine.py and the tests require

    def __init__(self, spec: RefinerSpec, max_batch: int) -> None:
        self.spec = spec
        self.max_batch = max_batch

    @classmethod
    def open(cls, artifact: ModelFile, device: str, max_batch: int, options: BackendOptions) -> RefinerBackend:
        """How the registry opens this runtime on the file it runs and a resolved device.

        Runtimes whose constructor takes other arguments, or that read `options`, override it.
        """
        return cls(artifact, device, max_batch)  # type: ignore[call-arg]

    def refine(self, crops: Any, vectors: Any) -> np.ndarray:
        size = self.spec.input_size
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (size, size, 3) or _dtype_name(crops) != "uint8":
            raise ValueError(f"crops must be uint8 (N, {size}, {size}, 3); got {crops.dtype} {tuple(crops.shape)}")
        if tuple(vectors.shape) != (len(crops), self.spec.vector_size):
            raise ValueError(f"vectors must be ({len(crops)}, {self.spec.vector_size}); got {tuple(vectors.shape)}")
        if len(crops) == 0:
            return np.zeros((0, self.spec.output_size), dtype=np.float32)
        crops, vectors = self._inputs(crops, vectors)
        step = self.max_batch
        return self._join([self._run(crops[start : start + step], vectors[start : start + step]) for start in range(0, len(crops), step)])

    def _inputs(self, crops: Any, vectors: Any) -> tuple[Any, Any]:
        """Checked inputs -> what `_run` slices: contiguous uint8 crops and float32 vectors."""
        return np.ascontiguousarray(crops), np.ascontiguousarray(vectors, dtype=np.float32)

    def _join(self, chunks: Sequence[Any]) -> np.ndarray:
        """The chunks' outputs -> one host (N, K) float32 array."""
        return np.concatenate(chunks, axis=0).astype(np.float32, copy=False)

    @abstractmethod
    def _run(self, crops: Any, vectors: Any) -> Any:
        """Run one batch of at most max_batch crops; returns (N, spec.output_size) float32."""

    def settle(self) -> None:
        """Wait for background work that changes this runtime's speed (OpenVINO's static-shape compiles).

        Benchmarks call it after their warm-up, so they time the steady state a long run sees.
        """

    def close(self) -> None:
        """Release runtime resources (sessions, contexts, buffers)."""


def _dtype_name(array: Any) -> str:
    """numpy's `uint8` and torch's `torch.uint8` alike, without importing torch."""
    return str(array.dtype).removeprefix("torch.")
