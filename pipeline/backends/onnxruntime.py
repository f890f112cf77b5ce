"""ONNX Runtime: the default backend, on the CPU everywhere and on CUDA where onnxruntime-gpu is installed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.backends.base import RefinerBackend
from pipeline.core.errors import BackendError
from pipeline.model.artifacts import BOXES, CROPS, VECTORS, ModelFile

try:
    import onnxruntime
except ImportError:  # the factory falls back to torch
    onnxruntime = None

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def cuda_provider_available() -> bool:
    """True only with onnxruntime-gpu installed *and* a GPU present (the provider is listed even without one)."""
    import torch

    return onnxruntime is not None and CUDA_PROVIDER in onnxruntime.get_available_providers() and torch.cuda.is_available()


class OnnxRuntimeBackend(RefinerBackend):
    name = "onnxruntime"

    def __init__(self, onnx: ModelFile | Path, device: str | None = None, max_batch: int = 32, threads: int | None = None) -> None:
        """device None picks CUDA when available; `threads` bounds the CPU provider's intra-op pool.

        The default pool is half the cores (at least one): the pipeline's reader, detector and
        croppers run on the others, and a refiner batch gains little past a few threads.
        """
        if onnxruntime is None:
            raise BackendError("onnxruntime is not installed; pip install onnxruntime (or onnxruntime-gpu)")
        onnx = ModelFile.of(onnx)
        super().__init__(onnx.spec, max_batch)
        self.device = device or ("cuda" if cuda_provider_available() else "cpu")
        if self.device == "cuda" and not cuda_provider_available():
            raise BackendError(
                "onnxruntime has no usable CUDAExecutionProvider here; pip install onnxruntime-gpu or use --device cpu"
            )
        if self.device not in ("cpu", "cuda"):
            raise BackendError(f"device {self.device} is not supported by onnxruntime; use cpu or cuda")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or max(1, (os.cpu_count() or 2) // 2)
        options.inter_op_num_threads = 1  # the graph is one chain: parallelism lives inside the ops
        options.log_severity_level = 3  # errors only: the provider-assignment chatter is noise in a CLI
        providers = [CUDA_PROVIDER, CPU_PROVIDER] if self.device == "cuda" else [CPU_PROVIDER]
        self.session = onnxruntime.InferenceSession(str(onnx.path), options, providers=providers)

    def _run(self, crops: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return self.session.run([BOXES], {CROPS: crops, VECTORS: vectors})[0]
