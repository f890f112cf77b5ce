"""TensorRT 10.x / 11.x: build an engine from the exported ONNX, and run it on torch-owned CUDA memory.

Only the name-based API of TensorRT 10+ is used (set_input_shape, set_tensor_address,
execute_async_v3); binding indices and execute_async_v2 are gone since 10.0. Buffers are torch
tensors and the work is queued on torch's current stream, so the refiner shares one CUDA context
and stream order with the detector and the GPU cropper. tools/check_tensorrt_api.py proves every
TensorRT name used here exists in the real 10.x and 11.x bindings; branches guarded by
`tensorrt_major() < 11` (or >=) are checked only against the versions that take them.
"""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path
from typing import NamedTuple

import torch

from pipeline.backends.base import BackendError
from pipeline.backends.torch import TensorInputBackend, resolve_device
from pipeline.onnx_export import BOXES, CROPS, VECTORS, read_sidecar
from pipeline.spec import RefinerSpec

try:
    import tensorrt as trt
except (ImportError, OSError):  # OSError: the Python package is there but libnvinfer is not
    trt = None

PRECISIONS = ("fp16", "fp32")


class BatchProfile(NamedTuple):
    """The one optimisation profile: the engine accepts any batch in minimum..maximum, tuned for optimum."""

    minimum: int
    optimum: int
    maximum: int


def tensorrt_version() -> str | None:
    return None if trt is None else trt.__version__


def tensorrt_major() -> int:
    require_tensorrt()
    return int(trt.__version__.split(".")[0])


def require_tensorrt() -> None:
    if trt is None:
        raise BackendError("the tensorrt package is not importable here; pip install tensorrt (needs an NVIDIA GPU and driver)")
    return trt


def strongly_typed() -> bool:
    """TensorRT 11 removed weakly typed networks (and BuilderFlag.FP16): precision comes from the ONNX types."""
    return tensorrt_major() >= 11


def gpu_identity(device: torch.device) -> dict:
    """What an engine is specific to besides the TensorRT version: the GPU model and its SM version."""
    major, minor = torch.cuda.get_device_capability(device)
    return {"name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


@functools.cache
def _logger() -> trt.ILogger:
    """One logger per process, as TensorRT asks; warnings and errors go to stderr."""
    return trt.Logger(trt.Logger.WARNING)


def _network_flags() -> int:
    if tensorrt_major() >= 11:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0  # 10.x: explicit batch is the only mode; weak typing lets BuilderFlag.FP16 pick precisions


def build_engine_file(
    onnx_path: Path, engine_path: Path, spec: RefinerSpec, precision: str, profile: BatchProfile, timing_cache: Path
) -> None:
    """Parse the ONNX, build with one batch profile, write the engine atomically; reuse and update the timing cache.

    On 11.x pass the FP16 ONNX for precision fp16 (see `strongly_typed`); on 10.x pass the FP32 one.
    """
    require_tensorrt()
    if precision not in PRECISIONS:
        raise BackendError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    builder = trt.Builder(_logger())
    network = builder.create_network(_network_flags())
    parser = trt.OnnxParser(network, _logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16" and tensorrt_major() < 11:  # 11.x: the FP16 ONNX's types decide instead
        config.set_flag(trt.BuilderFlag.FP16)
    optimisation = builder.create_optimization_profile()
    for name, tail in ((CROPS, (spec.input_size, spec.input_size, 3)), (VECTORS, (spec.vector_size,))):
        optimisation.set_shape(name, (profile.minimum, *tail), (profile.optimum, *tail), (profile.maximum, *tail))
    config.add_optimization_profile(optimisation)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    if not config.set_timing_cache(cache, False):  # False: never trust timings measured on another GPU or version
        config.set_timing_cache(config.create_timing_cache(b""), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path}; its log above says why")
    timing_cache.write_bytes(config.get_timing_cache().serialize())
    temporary = engine_path.with_name(engine_path.name + ".tmp")
    temporary.write_bytes(serialized)
    temporary.replace(engine_path)


class TensorRTBackend(TensorInputBackend):
    """Runs a serialized engine; one execution context per calling thread (contexts are not thread-safe)."""

    name = "tensorrt"

    def __init__(self, engine_path: Path, device: str | torch.device | None = None, max_batch: int = 32) -> None:
        require_tensorrt()
        engine_path = Path(engine_path)
        self.device = resolve_device(device or "cuda")
        if self.device.type != "cuda":
            raise BackendError("TensorRT engines run on CUDA only; use --backend onnxruntime on the CPU")
        sidecar = read_sidecar(engine_path)
        _check_built_here(engine_path, sidecar, self.device)
        spec = RefinerSpec.from_json(json.dumps(sidecar["spec"]))
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(_logger())
            self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise BackendError(f"TensorRT could not load {engine_path}; rebuild it: {_rebuild_hint(sidecar)}")
        engine_max = self._check_interface(engine_path, spec)
        super().__init__(spec, min(max_batch, engine_max))
        self._contexts = threading.local()

    def _check_interface(self, engine_path: Path, spec: RefinerSpec) -> int:
        """Check the engine's tensors against the spec; return the largest batch its profile accepts."""
        engine = self._engine
        expected = {
            CROPS: (trt.DataType.UINT8, trt.TensorIOMode.INPUT),
            VECTORS: (trt.DataType.FLOAT, trt.TensorIOMode.INPUT),
            BOXES: (trt.DataType.FLOAT, trt.TensorIOMode.OUTPUT),
        }
        names = {engine.get_tensor_name(index) for index in range(engine.num_io_tensors)}
        found = {name: (engine.get_tensor_dtype(name), engine.get_tensor_mode(name)) for name in names}
        if found != expected:
            raise BackendError(f"{engine_path} has tensors {sorted(names)} unlike this project's refiner; rebuild it")
        _, _, largest = engine.get_tensor_profile_shape(CROPS, 0)
        if tuple(largest)[1:] != (spec.input_size, spec.input_size, 3):
            raise BackendError(
                f"{engine_path} takes crops {tuple(largest)[1:]} but its sidecar says {spec.input_size} px; rebuild it"
            )
        return int(largest[0])

    def _context(self) -> trt.IExecutionContext:
        context = getattr(self._contexts, "context", None)
        if context is None:
            context = self._engine.create_execution_context()
            if context is None:
                raise BackendError("TensorRT could not create an execution context (out of GPU memory?)")
            self._contexts.context = context
        return context

    def _run_tensors(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        context = self._context()
        boxes = torch.empty((len(crops), self.spec.output_size), dtype=torch.float32, device=self.device)
        for name, tensor in ((CROPS, crops), (VECTORS, vectors)):
            if not context.set_input_shape(name, tuple(tensor.shape)):
                raise BackendError(f"TensorRT rejected {name} of shape {tuple(tensor.shape)} (outside the engine's profile)")
        for name, tensor in ((CROPS, crops), (VECTORS, vectors), (BOXES, boxes)):
            context.set_tensor_address(name, tensor.data_ptr())
        with torch.cuda.device(self.device):
            if not context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
                raise BackendError("TensorRT could not enqueue the refiner; its log above says why")
        return boxes


def _check_built_here(engine_path: Path, sidecar: dict, device: torch.device) -> None:
    """Engines are specific to the TensorRT version and GPU model that built them: refuse others up front."""
    built = (sidecar.get("tensorrt"), sidecar.get("gpu"))
    here = (tensorrt_version(), gpu_identity(device))
    if built != here:
        raise BackendError(
            f"{engine_path.name} was built with TensorRT {built[0]} on {_describe_gpu(built[1])} but this is TensorRT "
            f"{here[0]} on {_describe_gpu(here[1])}; rebuild it here: {_rebuild_hint(sidecar)}"
        )


def _describe_gpu(gpu: dict | None) -> str:
    return "no GPU" if not gpu else f"{gpu.get('name')} (sm {gpu.get('compute_capability')})"


def _rebuild_hint(sidecar: dict) -> str:
    return sidecar.get("rebuild_command") or "python build_engine.py --refiner CHECKPOINT"
