"""ONNX Runtime on CUDA only where onnxruntime-gpu can run: a GPU found by default falls back to the CPU, a named one is refused."""

from __future__ import annotations

import pytest

from pipeline.backends import BackendOptions
from pipeline.backends.onnxruntime import OnnxRuntimeBackend, cuda_provider_available
from pipeline.core.errors import BackendError
from pipeline.model.artifacts import ModelFile


@pytest.mark.skipif(cuda_provider_available(), reason="checks the fallback where onnxruntime-gpu cannot run")
def test_a_default_cuda_device_falls_back_to_the_cpu_but_a_named_one_is_refused(small_onnx):
    onnx = ModelFile.read(small_onnx)
    assert OnnxRuntimeBackend.open(onnx, "cuda", 4, BackendOptions(device_named=False)).device == "cpu"
    with pytest.raises(BackendError, match="no usable CUDAExecutionProvider"):
        OnnxRuntimeBackend.open(onnx, "cuda", 4, BackendOptions(device_named=True))
