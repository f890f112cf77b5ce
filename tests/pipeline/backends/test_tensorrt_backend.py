"""TensorRT backend: refuses clearly where it cannot run; where it can, engines match torch and refuse other machines.

The GPU half needs tensorrt and a CUDA GPU and skips otherwise (the reason says which is missing).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

import build_engine
from build_engine import ENGINE_TOLERANCE, random_inputs
from pipeline.backends import BackendError, open_backend
from pipeline.backends.tensorrt import TensorRTBackend, tensorrt_version
from pipeline.backends.torch import TorchBackend
from pipeline.onnx_export import read_sidecar, sidecar_path

if tensorrt_version() is None:
    gpu_reason = "tensorrt is not installed"
elif not torch.cuda.is_available():
    gpu_reason = "torch sees no CUDA GPU"
else:
    gpu_reason = None
needs_tensorrt_gpu = pytest.mark.skipif(gpu_reason is not None, reason=f"needs tensorrt and a CUDA GPU: {gpu_reason}")


@pytest.mark.skipif(tensorrt_version() is not None, reason="checks the error where tensorrt is not installed")
def test_missing_tensorrt_is_a_clear_backend_error(tmp_path):
    with pytest.raises(BackendError, match="tensorrt package is not importable.*pip install tensorrt"):
        TensorRTBackend(tmp_path / "refiner.engine")


@pytest.fixture(scope="module", params=["fp16", "fp32"])
def engine(request, tmp_path_factory):
    """A B0 engine built by build_engine.py itself (so the CLI's TensorRT path runs too), per precision."""
    out = tmp_path_factory.mktemp(f"engine-{request.param}")
    assert build_engine.main(["--backbones", "b0", "--max-batch", "8", "--precision", request.param, "--out", str(out)]) == 0
    (path,) = out.glob("*.engine")
    return path, request.param


@needs_tensorrt_gpu
def test_engine_matches_torch_and_records_where_it_was_built(engine):
    path, precision = engine
    sidecar = read_sidecar(path)
    assert sidecar["precision"] == precision and sidecar["profile"] == {"minimum": 1, "optimum": 8, "maximum": 8}
    assert sidecar["tensorrt"] == tensorrt_version() and sidecar["gpu"]["name"] == torch.cuda.get_device_name()
    backend = open_backend("auto", path)
    assert isinstance(backend, TensorRTBackend) and backend.max_batch == 8
    model = build_engine.random_refiner(backend.spec)
    crops, vectors = random_inputs(backend.spec, 11, seed=4)  # 11 > max batch 8: chunked
    reference = TorchBackend(model, "cpu").refine(crops, vectors)
    assert np.abs(backend.refine(crops, vectors) - reference).max() < ENGINE_TOLERANCE[precision]


@needs_tensorrt_gpu
def test_engine_takes_crops_already_on_the_gpu_from_several_threads(engine):
    backend = TensorRTBackend(engine[0])
    crops, vectors = random_inputs(backend.spec, 6, seed=6)
    expected = backend.refine(crops, vectors)
    on_gpu = torch.from_numpy(crops).cuda()
    np.testing.assert_allclose(backend.refine(on_gpu, vectors), expected, rtol=0, atol=1e-6)
    results = [None] * 4

    def work(index: int) -> None:  # each thread gets its own execution context
        results[index] = backend.refine(on_gpu, vectors)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)


@needs_tensorrt_gpu
def test_engine_from_another_machine_is_refused_with_the_rebuild_command(engine, tmp_path):
    copy = tmp_path / engine[0].name
    copy.write_bytes(engine[0].read_bytes())
    sidecar = read_sidecar(engine[0])
    sidecar_path(copy).write_text(
        json.dumps({**sidecar, "tensorrt": "9.0.0", "gpu": {"name": "Other GPU", "compute_capability": "7.5"}})
    )
    with pytest.raises(
        BackendError, match=r"built with TensorRT 9\.0\.0 on Other GPU .*rebuild it here: python build_engine.py --backbones b0"
    ) as error:
        TensorRTBackend(copy)
    assert "\n" not in str(error.value)
