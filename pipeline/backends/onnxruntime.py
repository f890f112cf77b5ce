"""ONNX Runtime: the portable backend, on the CPU everywhere (`auto`'s fallback there) and on CUDA where onnxruntime-gpu is installed."""

from __future__ import annotations

import numpy as np

from pipeline.backends.base import BackendOptions, BackendUnavailable, RefinerBackend, default_cpu_threads
from pipeline.core.errors import BackendError
from pipeline.model.artifacts import BOXES, CROPS, VECTORS, ModelFile

try:
    import onnxruntime
except ImportError:  # `auto` falls back to torch
    onnxruntime = None

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def cuda_provider_available() -> bool:
    """True only with onnxruntime-gpu installed *and* a GPU present (the provider is listed even without one)."""
    import torch

    return onnxruntime is not None and CUDA_PROVIDER in onnxruntime.get_available_providers() and torch.cuda.is_available()


class OnnxRuntimeBackend(RefinerBackend):
    name = "onnxruntime"

    def __init__(self, onnx: ModelFile, device: str = "cpu", max_batch: int = 32, threads: int | None = None) -> None:
        """`device`: cpu, cuda or cuda:N (resolved by the caller); `threads` bounds the CPU provider's pool
        (None: `default_cpu_threads()`, the CPU runtimes' one policy)."""
        if onnxruntime is None:
            raise BackendUnavailable("onnxruntime is not installed; pip install onnxruntime (or onnxruntime-gpu)")
        super().__init__(onnx.spec, max_batch)
        self.device = device
        providers: list = [CPU_PROVIDER]
        if device.startswith("cuda"):
            if not cuda_provider_available():
                raise BackendError(
                    "onnxruntime has no usable CUDAExecutionProvider here; pip install onnxruntime-gpu or use --device cpu"
                )
            index = torch_index(device)
            providers = [(CUDA_PROVIDER, {"device_id": index}), CPU_PROVIDER]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or default_cpu_threads()
        options.inter_op_num_threads = 1  # the graph is one chain: parallelism lives inside the ops
        options.log_severity_level = 3  # errors only: the provider-assignment chatter is noise in a CLI
        self.session = onnxruntime.InferenceSession(str(onnx.path), options, providers=providers)

    @classmethod
    def open(cls, artifact: ModelFile, device: str, max_batch: int, options: BackendOptions) -> OnnxRuntimeBackend:
        """A GPU that only the default device found, without onnxruntime-gpu, leaves ONNX Runtime on the CPU."""
        if device.startswith("cuda") and not options.device_named and not cuda_provider_available():
            device = "cpu"
        return cls(artifact, device, max_batch, options.threads)

    def _run(self, crops: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return self.session.run([BOXES], {CROPS: crops, VECTORS: vectors})[0]


def torch_index(device: str) -> int:
    """`cuda:N` -> N; plain `cuda` -> torch's current device (the one the detector and croppers use)."""
    import torch

    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index
