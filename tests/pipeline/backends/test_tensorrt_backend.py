"""TensorRT backend: refuses clearly where it cannot run; where it can, engines match torch and refuse other machines.

The GPU half needs a CUDA GPU (and, for data-center engines, tensorrt) and skips otherwise, saying
which is missing. On a GPU the engines are built for it: `--compute-capability current` for RTX.
"""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.backends import build, open_backend
from pipeline.backends.tensorrt import ENGINE_TOLERANCE
from pipeline.backends.tensorrt import Flavour, TensorRTBackend, check_built_for, select_flavour
from pipeline.backends.torch import TorchBackend
from pipeline.core.errors import BackendError
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import ModelFile, read_sidecar, sidecar_path
from pipeline.model.random_init import random_inputs, random_refiner

gpu_reason = None if torch.cuda.is_available() else "torch sees no CUDA GPU"
needs_tensorrt_gpu = pytest.mark.skipif(gpu_reason is not None, reason=f"needs a CUDA GPU: {gpu_reason}")
RTX = Flavour("rtx", SimpleNamespace(__version__="1.7.1.116"))  # the checks read versions only: no library needed
H200 = {"name": "NVIDIA H200", "compute_capability": "9.0"}


def rtx_sidecar(**changes) -> dict:
    command = "python build_engine.py --backbones b0 --classes person --trt rtx --compute-capability sm80,sm86 --out engines"
    fields = {"tensorrt": RTX.version, "tensorrt_flavour": "rtx", "compute_capabilities": ["sm80", "sm86"], "gpu": None}
    return {**fields, "rebuild_command": command, **changes}


@pytest.mark.skipif(gpu_reason is None, reason="checks the refusal where no GPU exists")
def test_engine_without_a_gpu_is_a_clear_backend_error(tmp_path):
    engine = tmp_path / "refiner.engine"
    engine.write_bytes(b"engine")
    spec = RefinerSpec(backbone="efficientnet_b0", input_size=128, class_names=("person",))
    sidecar_path(engine).write_text(json.dumps({"spec": json.loads(spec.to_json()), **rtx_sidecar()}))
    with pytest.raises(BackendError, match=r"TensorRT-RTX 1\.\S+ needs a CUDA GPU to run; torch sees none"):
        TensorRTBackend(ModelFile.read(engine))


def test_rtx_engine_for_other_gpus_is_refused_naming_the_rebuild_for_this_one(tmp_path):
    with pytest.raises(BackendError) as error:
        check_built_for(tmp_path / "b0.engine", rtx_sidecar(), RTX, H200)
    assert str(error.value) == (
        f"b0.engine was built with TensorRT-RTX {RTX.version} for sm80,sm86 but this is TensorRT-RTX {RTX.version} on "
        "NVIDIA H200 (sm 9.0); rebuild it here: python build_engine.py --backbones b0 --classes person --trt rtx "
        "--compute-capability current --out engines"
    )
    with pytest.raises(BackendError, match=r"built with TensorRT-RTX 1\.0\.0 for sm80,sm86 .*rebuild it here"):
        check_built_for(tmp_path / "b0.engine", rtx_sidecar(tensorrt="1.0.0"), RTX, {**H200, "compute_capability": "8.6"})
    check_built_for(tmp_path / "b0.engine", rtx_sidecar(), RTX, {**H200, "compute_capability": "8.6"})  # fits: no error
    current = rtx_sidecar(compute_capabilities=["current"], gpu=H200)
    check_built_for(tmp_path / "b0.engine", current, RTX, H200)
    with pytest.raises(BackendError, match="for current but"):
        check_built_for(tmp_path / "b0.engine", current, RTX, {**H200, "name": "NVIDIA L4"})


@pytest.fixture(scope="module", params=["fp16", "fp32"])
def engine(request, tmp_path_factory):
    """A B0 engine built by build_engine.py's library for this GPU (so the build's TensorRT path runs too), per precision.

    Skipped only where no engine can exist, decided before building: no TensorRT flavour that runs here,
    or only TensorRT-RTX on a GPU it has no target for (sm90: an H100/H200 without data-center tensorrt).
    Where an engine can exist, a failed build fails the tests.
    """
    no_engine = engine_impossible_here()
    if no_engine:
        pytest.skip(f"no {request.param} engine for this GPU: {no_engine}")
    out = tmp_path_factory.mktemp(f"engine-{request.param}")
    options = build.BuildOptions(out=out, max_batch=8, precision=request.param, compute_capability=("current",))
    try:
        build.build_all(build.models_to_build(backbones=("b0",)), options)
    except build.ParityError as error:  # built and ran, but computes something else: a real failure
        pytest.fail(str(error))
    except BackendError as error:  # an engine can exist here (checked above): a failed build is a failure
        pytest.fail(f"no {request.param} engine built: {error}")
    engines = list(out.glob("*.engine"))
    if not engines:
        pytest.fail(f"build_engine.py's library built no {request.param} engine where one can exist")
    return engines[0], request.param


def engine_impossible_here() -> str | None:
    """Why no engine can be built and run on this machine, or None when one can (then a failed build is a bug)."""
    from pipeline.backends.tensorrt import RTX_TARGETS, TensorRTUnavailable, gpu_identity, sm_of

    try:
        flavour = select_flavour("auto", to_run=True)
    except TensorRTUnavailable as error:
        return str(error)
    gpu = gpu_identity(torch.device("cuda"))
    if flavour.name == "rtx" and sm_of(gpu) not in RTX_TARGETS:
        return f"TensorRT-RTX has no target for {gpu['name']} ({sm_of(gpu)}) and data-center tensorrt is not installed"
    return None


@needs_tensorrt_gpu
def test_engine_matches_torch_and_records_where_it_was_built(engine):
    path, precision = engine
    sidecar = read_sidecar(path)
    assert sidecar["precision"] == precision and sidecar["profile"] == {"minimum": 1, "optimum": 8, "maximum": 8}
    assert sidecar["tensorrt"] == select_flavour(sidecar["tensorrt_flavour"], to_run=True).version
    assert sidecar["gpu"]["name"] == torch.cuda.get_device_name() and sidecar["executed"] is True
    backend = open_backend("auto", path)
    assert isinstance(backend, TensorRTBackend) and backend.max_batch == 8
    model = random_refiner(backend.spec)
    crops, vectors = random_inputs(backend.spec, 11, seed=4)  # 11 > max batch 8: chunked
    reference = TorchBackend(model, "cpu").refine(crops, vectors)
    assert np.abs(backend.refine(crops, vectors) - reference).max() < ENGINE_TOLERANCE[precision]


@needs_tensorrt_gpu
def test_engine_takes_crops_already_on_the_gpu_from_several_threads(engine):
    backend = TensorRTBackend(ModelFile.read(engine[0]))
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
        BackendError, match=r"built with TensorRT(-RTX)? 9\.0\.0 .*rebuild it here: python build_engine.py --backbones b0"
    ) as error:
        TensorRTBackend(ModelFile.read(copy))
    assert "\n" not in str(error.value)
