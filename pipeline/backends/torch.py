"""PyTorch runtime: fp32 on the CPU, fp16 on CUDA, optionally replaying CUDA graphs per batch bucket.

Also home of `TensorInputBackend`, the base of every backend that runs on torch tensors (this one and
TensorRT): they take the crops either as a host numpy array (uploaded once, through pinned memory) or
as a uint8 tensor already on their device, which is what the GPU cropper produces.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from pipeline.backends.base import FP32_TOLERANCE, HALF_TOLERANCE, BackendOptions, RefinerBackend
from pipeline.core.errors import BackendError
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import ModelFile
from pipeline.model.checkpoint import load_refiner
from pipeline.model.net import RefinerNet


def torch_device(device: str) -> torch.device:
    """A resolved device name as torch compares it: `cuda` gets the current index, so it equals a tensor's device."""
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


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
    so callers never branch on the backend. Host arrays are uploaded once, whole, before chunking.
    """

    device: torch.device
    takes_device_tensors = True

    def _inputs(self, crops: np.ndarray | torch.Tensor, vectors: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(crops, torch.Tensor):
            crops = upload(np.ascontiguousarray(crops), self.device)
        elif crops.device != self.device:
            raise ValueError(f"crops are on {crops.device} but this {self.name} backend runs on {self.device}")
        vectors = upload(np.asarray(vectors), self.device) if isinstance(vectors, np.ndarray) else vectors.to(self.device)
        return crops.contiguous(), vectors.float().contiguous()

    def _join(self, chunks: Sequence[torch.Tensor]) -> np.ndarray:
        return torch.cat(list(chunks)).cpu().numpy()

    @abstractmethod
    def _run(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """One batch of at most max_batch contiguous device tensors -> (N, K) float32 on the device."""


class TorchBackend(TensorInputBackend):
    """RefinerNet in eager PyTorch; the reference the other backends are compared against.

    Takes the model over: it is moved to the device (and cast to FP16 on CUDA) in place.
    """

    name = "torch"

    def __init__(
        self, model: RefinerNet, device: str | torch.device = "cpu", max_batch: int = 32, cuda_graphs: bool = False
    ) -> None:
        super().__init__(model.spec, max_batch)
        self.device = torch_device(str(device))
        if cuda_graphs and self.device.type != "cuda":
            raise BackendError("CUDA graphs need device cuda; drop cuda_graphs or use a GPU")
        half = self.device.type == "cuda"  # fp16 is where a GPU's throughput is; CPUs have no fast half kernels
        self.model = model.to(self.device, torch.float16 if half else torch.float32).eval()
        self.parity_tolerance = HALF_TOLERANCE if half else FP32_TOLERANCE
        self._graphs = CudaGraphRunner(self.model, self.spec, self.device, max_batch) if cuda_graphs else None

    @classmethod
    def open(cls, artifact: ModelFile, device: str, max_batch: int, options: BackendOptions) -> TorchBackend:
        return cls(load_refiner(artifact), device, max_batch, options.cuda_graphs)

    def _run(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
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
