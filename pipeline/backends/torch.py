"""PyTorch runtime: fp32 on the CPU, fp16 on CUDA, optionally replaying CUDA graphs per batch bucket.

Also home of `TensorInputBackend`, the base of every backend that runs on torch tensors (this one and
TensorRT): they take the crops either as a host numpy array (uploaded once, through pinned memory) or
as a uint8 tensor already on their device, which is what the GPU cropper produces.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from pathlib import Path

import numpy as np
import torch

from pipeline.backends.base import RefinerBackend
from pipeline.core.errors import BackendError
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import ModelFile
from pipeline.model.checkpoint import load_refiner
from pipeline.model.net import RefinerNet


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None means the GPU when there is one; asking for CUDA without one is a BackendError, not a crash later."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendError("device cuda was requested but torch sees no CUDA GPU; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise BackendError(f"device {device} is not supported; use cpu or cuda")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # so it compares equal to a tensor's device
    return device


def upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Host array -> tensor on `device`; to CUDA via pinned memory so the copy runs asynchronously."""
    if not array.flags.c_contiguous or min(array.strides, default=0) < 0:
        array = array.copy()  # numpy calls a reversed length-1 view contiguous; torch refuses its negative stride
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


class TensorInputBackend(RefinerBackend):
    """A backend that computes on torch tensors: `refine` also accepts crops already on its device.

    With a tensor the result is still a host (N, K) float32 array (K is 4 or 6: a few bytes per box),
    so callers never branch on the backend.
    """

    device: torch.device

    def refine(self, crops: np.ndarray | torch.Tensor, vectors: np.ndarray | torch.Tensor) -> np.ndarray:
        if not isinstance(crops, torch.Tensor):
            return super().refine(crops, vectors)
        size = self.spec.input_size
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (size, size, 3) or crops.dtype != torch.uint8:
            raise ValueError(f"crops must be uint8 (N, {size}, {size}, 3); got {crops.dtype} {tuple(crops.shape)}")
        if crops.device != self.device:
            raise ValueError(f"crops are on {crops.device} but this {self.name} backend runs on {self.device}")
        if tuple(vectors.shape) != (len(crops), self.spec.vector_size):
            raise ValueError(f"vectors must be ({len(crops)}, {self.spec.vector_size}); got {tuple(vectors.shape)}")
        if len(crops) == 0:
            return np.zeros((0, self.spec.output_size), dtype=np.float32)
        crops = crops.contiguous()
        vectors = (upload(vectors, self.device) if isinstance(vectors, np.ndarray) else vectors.to(self.device)).float()
        chunks = [
            self._run_tensors(crops[start : start + self.max_batch], vectors[start : start + self.max_batch].contiguous())
            for start in range(0, len(crops), self.max_batch)
        ]
        return torch.cat(chunks).cpu().numpy()

    def _run(self, crops: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return self._run_tensors(upload(crops, self.device), upload(vectors, self.device)).cpu().numpy()

    @abstractmethod
    def _run_tensors(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """One batch of at most max_batch contiguous device tensors -> (N, K) float32 on the device."""


class TorchBackend(TensorInputBackend):
    """RefinerNet in eager PyTorch; the reference the other backends are compared against.

    Takes the model over: it is moved to the device (and cast to FP16 on CUDA) in place.
    """

    name = "torch"

    def __init__(
        self, model: RefinerNet, device: str | torch.device | None = None, max_batch: int = 32, cuda_graphs: bool = False
    ) -> None:
        super().__init__(model.spec, max_batch)
        self.device = resolve_device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise BackendError("CUDA graphs need device cuda; drop cuda_graphs or use a GPU")
        half = self.device.type == "cuda"  # fp16 is where a GPU's throughput is; CPUs have no fast half kernels
        self.model = model.to(self.device, torch.float16 if half else torch.float32).eval()
        self._graphs = CudaGraphRunner(self.model, self.spec, self.device, max_batch) if cuda_graphs else None

    @classmethod
    def from_checkpoint(
        cls, checkpoint: ModelFile | Path, device: str | torch.device | None = None, max_batch: int = 32, cuda_graphs: bool = False
    ) -> TorchBackend:
        return cls(load_refiner(checkpoint), device, max_batch, cuda_graphs)

    def _run_tensors(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        if self._graphs is not None:
            return self._graphs(crops, vectors)
        with torch.inference_mode():
            return self.model(crops, vectors).float()


def batch_buckets(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to max_batch (itself included): at most 2x padding, log2(max) graphs to capture."""
    buckets = [1 << power for power in range(max_batch.bit_length()) if 1 << power < max_batch]
    return [*buckets, max_batch]


class _CapturedBatch:
    """One CUDA graph with the static input and output tensors it reads and writes."""

    def __init__(self, model: RefinerNet, spec: RefinerSpec, device: torch.device, batch: int) -> None:
        size = spec.input_size
        self.crops = torch.zeros((batch, size, size, 3), dtype=torch.uint8, device=device)
        self.vectors = torch.zeros((batch, spec.vector_size), dtype=torch.float32, device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.no_grad():
            with torch.cuda.stream(side):  # warm-up off the capture: cuDNN picks its algorithms here
                for _ in range(3):
                    model(self.crops, self.vectors)
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.boxes = model(self.crops, self.vectors).float()


class CudaGraphRunner:
    """Runs the model by replaying a graph captured for the smallest bucket >= the batch.

    A refiner is a few hundred small kernels; at small batches launching them costs more than
    running them, and one replay removes that. Padding rows hold stale inputs; rows are
    independent in eval mode, so they never touch the real rows and are sliced off.
    """

    def __init__(self, model: RefinerNet, spec: RefinerSpec, device: torch.device, max_batch: int) -> None:
        self.model, self.spec, self.device = model, spec, device
        self.buckets = batch_buckets(max_batch)
        self._captured: dict[int, _CapturedBatch] = {}
        self._lock = threading.Lock()  # the static buffers are shared: one replay at a time

    def __call__(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        count = len(crops)
        bucket = next(size for size in self.buckets if size >= count)
        with self._lock:
            captured = self._captured.get(bucket)
            if captured is None:
                captured = self._captured[bucket] = _CapturedBatch(self.model, self.spec, self.device, bucket)
            captured.crops[:count].copy_(crops)
            captured.vectors[:count].copy_(vectors)
            captured.graph.replay()
            return captured.boxes[:count].clone()
