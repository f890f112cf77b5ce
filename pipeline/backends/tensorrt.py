"""TensorRT 10.x / 11.x and TensorRT for RTX: build an engine from the exported ONNX, run it on torch CUDA memory.

Two flavours share one Python API (the RTX bindings are the same pybind module under another
name); the few differences live in `Flavour` and in the branches guarded by `flavour.is_rtx()`:
- data-center `tensorrt` builds only on a GPU, for that GPU; `tensorrt_rtx` builds ahead of time
  without one, for a list of compute capabilities (`set_compute_capability`), and can say whether
  an engine runs here (`Runtime.get_engine_validity`) before deserialising it;
- FP16: 10.x sets BuilderFlag.FP16 on a weakly typed network; 11.x and RTX only build strongly
  typed networks, whose precision comes from the (FP16) ONNX types.
Only the name-based API of TensorRT 10+ is used (set_input_shape, set_tensor_address,
execute_async_v3). Buffers are torch tensors and work is queued on torch's current stream, so the
refiner shares one CUDA context and stream order with the detector and the GPU cropper.
tools/check_tensorrt_api.py proves every name used here exists in the real 10.x, 11.x and RTX
bindings; branches guarded by `flavour.tensorrt_major() < 11` or `flavour.is_rtx()` are checked
only against the versions that take them.
"""

from __future__ import annotations

import functools
import importlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import torch

from pipeline.backends.base import HALF_TOLERANCE, BackendUnavailable
from pipeline.backends.torch import TensorInputBackend, torch_device
from pipeline.core.errors import BackendError, UsageError
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import BOXES, CROPS, VECTORS, ModelFile

if TYPE_CHECKING:
    import tensorrt as trt

PRECISIONS = ("fp16", "fp32")
# Engines against FP32 torch: FP32 engines use TF32 convolutions by default, FP16 ones half precision.
ENGINE_TOLERANCE = {"fp32": 5e-3, "fp16": HALF_TOLERANCE}
FLAVOURS = {"tensorrt": "tensorrt", "rtx": "tensorrt_rtx"}  # CLI name -> Python module
# Wheels-only installs (GPU machines fed `.whl/`) lack the tensorrt_rtx sdist, a two-line re-export of the bindings.
FALLBACK_MODULES = {"tensorrt": (), "rtx": ("tensorrt_rtx_bindings",)}
CHOICES = ("auto", *FLAVOURS)
INSTALL = {
    "tensorrt": "pip install tensorrt (needs an NVIDIA GPU and driver)",
    "rtx": "pip install tensorrt-rtx-cu12==1.7.1.116",
}
# TensorRT-RTX targets (there is no SM90). SM75 needs opting in: it is the oldest and makes engines larger.
RTX_TARGETS = ("sm75", "sm80", "sm86", "sm89", "sm120", "sm121")
PORTABLE_TARGETS = ("sm80", "sm86", "sm89", "sm120", "sm121")
CURRENT_TARGET = "current"  # the GPU of the build machine (needs one)


class BatchProfile(NamedTuple):
    """The one optimisation profile: the engine accepts any batch in minimum..maximum, tuned for optimum."""

    minimum: int
    optimum: int
    maximum: int


class TensorRTUnavailable(BackendUnavailable):
    """The asked-for TensorRT flavour is not importable, or cannot build or run on this machine."""


@dataclass(frozen=True)
class Flavour:
    """One importable TensorRT: `tensorrt` (10.x/11.x) or `tensorrt_rtx`; `module` is what the code calls `trt`."""

    name: str  # "tensorrt" or "rtx"
    module: ModuleType

    def is_rtx(self) -> bool:
        return self.name == "rtx"

    def tensorrt_major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def version(self) -> str:
        return self.module.__version__

    @property
    def label(self) -> str:
        return f"{'TensorRT-RTX' if self.is_rtx() else 'TensorRT'} {self.version}"

    def strongly_typed(self) -> bool:
        """TensorRT 11 and RTX have no weakly typed networks (nor BuilderFlag.FP16): precision comes from the ONNX types."""
        return self.is_rtx() or self.tensorrt_major() >= 11

    def builds_without_gpu(self) -> bool:
        return self.is_rtx()


@functools.cache
def _import(name: str) -> ModuleType | None:
    """Imported on first use: the RTX library is 220 MB and most commands never touch it."""
    for module in (FLAVOURS[name], *FALLBACK_MODULES[name]):
        try:
            return importlib.import_module(module)
        except (ImportError, OSError):  # OSError: the Python package is there but its shared library is not
            continue
    return None


def flavour_named(name: str) -> Flavour:
    module = _import(name)
    if module is None:
        raise TensorRTUnavailable(f"the {FLAVOURS[name]} package is not importable here; {INSTALL[name]}")
    return Flavour(name, module)


def select_flavour(choice: str = "auto", *, to_run: bool = False) -> Flavour:
    """`auto`: data-center TensorRT where it imports and a GPU is present (the GPU's own engine), else TensorRT-RTX.

    `to_run`: the engine will also be executed here, so a GPU is required whatever the flavour.
    """
    if choice not in CHOICES:
        raise BackendError(f"TensorRT flavour {choice!r} is not one of {', '.join(CHOICES)}")
    gpu = torch.cuda.is_available()
    if choice == "auto":
        reasons = []
        for name in FLAVOURS:
            try:
                return select_flavour(name, to_run=to_run)
            except TensorRTUnavailable as error:
                reasons.append(str(error))
        raise TensorRTUnavailable("; ".join(reasons))
    flavour = flavour_named(choice)
    if not gpu and (to_run or not flavour.builds_without_gpu()):
        raise TensorRTUnavailable(f"{flavour.label} needs a CUDA GPU {'to run' if to_run else 'to build'}; torch sees none")
    return flavour


def gpu_identity(device: torch.device) -> dict:
    """What an engine is specific to besides the TensorRT version: the GPU model and its SM version."""
    major, minor = torch.cuda.get_device_capability(device)
    return {"name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


def sm_of(gpu: dict) -> str:
    """{"compute_capability": "8.6"} -> "sm86", the name RTX targets use."""
    return "sm" + gpu["compute_capability"].replace(".", "")


def parse_targets(text: str) -> tuple[str, ...]:
    """`sm80,sm86` / `portable` / `current` -> RTX target names; ValueError names the valid ones."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    names = [target for name in names for target in (PORTABLE_TARGETS if name == "portable" else (name,))]
    unknown = [name for name in names if name not in (*RTX_TARGETS, CURRENT_TARGET)]
    if unknown or not names:
        raise UsageError(f"{text!r}: choose from {', '.join(RTX_TARGETS)}, portable or {CURRENT_TARGET} (TensorRT-RTX has no sm90)")
    if CURRENT_TARGET in names and len(names) > 1:
        raise UsageError(f"{CURRENT_TARGET!r} cannot be combined with other targets")
    return tuple(dict.fromkeys(names))


@functools.cache
def _logger(flavour: Flavour) -> trt.ILogger:
    """One logger per process and flavour, as TensorRT asks; warnings and errors go to stderr."""
    trt = flavour.module
    return trt.Logger(trt.Logger.WARNING)


def _network_flags(flavour: Flavour) -> int:
    trt = flavour.module
    if not flavour.is_rtx() and flavour.tensorrt_major() < 11:
        return 0  # 10.x: explicit batch is the only mode; weak typing lets BuilderFlag.FP16 pick precisions
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class BuiltEngine:
    """What a build can tell without a GPU: the network's tensors as TensorRT parsed them, and the engine's size."""

    inputs: dict[str, dict]
    outputs: dict[str, dict]
    serialized_bytes: int
    targets: tuple[str, ...] | None  # RTX compute capabilities; None: the build machine's GPU


def build_engine_file(
    flavour: Flavour,
    onnx_path: Path,
    engine_path: Path,
    spec: RefinerSpec,
    precision: str,
    profile: BatchProfile,
    *,
    targets: tuple[str, ...] = PORTABLE_TARGETS,
    timing_cache: Path | None = None,
) -> BuiltEngine:
    """Parse the ONNX, build with one batch profile, write the engine atomically.

    Strongly typed flavours (11.x, RTX) take the FP16 ONNX for precision fp16, 10.x the FP32 one.
    `targets` applies to RTX only; `timing_cache` (data-center only: RTX does not time kernels
    ahead of time) is reused and updated. A graph TensorRT cannot parse is a one-line BackendError
    quoting the parser.
    """
    trt = flavour.module
    if precision not in PRECISIONS:
        raise BackendError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    builder = trt.Builder(_logger(flavour))
    network = builder.create_network(_network_flags(flavour))
    parser = trt.OnnxParser(network, _logger(flavour))
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(_one_line(parser.get_error(index)) for index in range(parser.num_errors))
        raise BackendError(f"{flavour.label} could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16" and not flavour.is_rtx() and flavour.tensorrt_major() < 11:
        config.set_flag(trt.BuilderFlag.FP16)  # 11.x and RTX: the FP16 ONNX's types decide instead
    if flavour.is_rtx():  # one engine with kernels for each compute capability
        config.num_compute_capabilities = len(targets)
        for index, target in enumerate(targets):
            if not config.set_compute_capability(trt.ComputeCapability.__members__[target.upper()], index):
                raise BackendError(f"{flavour.label} refused compute capability {target}")
    optimisation = builder.create_optimization_profile()
    for name, tail in ((CROPS, (spec.input_size, spec.input_size, 3)), (VECTORS, (spec.vector_size,))):
        optimisation.set_shape(name, (profile.minimum, *tail), (profile.optimum, *tail), (profile.maximum, *tail))
    config.add_optimization_profile(optimisation)
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        if not config.set_timing_cache(cache, False):  # False: never trust timings measured on another GPU or version
            config.set_timing_cache(config.create_timing_cache(b""), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"{flavour.label} failed to build an engine from {onnx_path.name}; its log above says why")
    if timing_cache is not None:
        timing_cache.write_bytes(config.get_timing_cache().serialize())
    temporary = engine_path.with_name(engine_path.name + ".tmp")
    temporary.write_bytes(serialized)
    temporary.replace(engine_path)
    tensors = [network.get_input(index) for index in range(network.num_inputs)]
    outputs = [network.get_output(index) for index in range(network.num_outputs)]
    return BuiltEngine(
        inputs={tensor.name: _describe(tensor) for tensor in tensors},
        outputs={tensor.name: _describe(tensor) for tensor in outputs},
        serialized_bytes=serialized.nbytes,
        targets=targets if flavour.is_rtx() else None,
    )


def _describe(tensor: trt.ITensor) -> dict:
    return {"dtype": tensor.dtype.name, "shape": list(tensor.shape)}


class TensorRTBackend(TensorInputBackend):
    """Runs a serialized engine of either flavour; one execution context per calling thread (contexts are not thread-safe)."""

    name = "tensorrt"

    def __init__(self, engine: ModelFile, device: str = "cuda", max_batch: int = 32) -> None:
        engine_path, sidecar, spec = engine.path, engine.sidecar, engine.spec
        self.precision = str(sidecar.get("precision", "fp16"))
        flavour = select_flavour(sidecar.get("tensorrt_flavour", "tensorrt"), to_run=True)
        self.flavour = flavour
        self.device = torch_device(device)
        if self.device.type != "cuda":
            raise BackendError("TensorRT engines run on CUDA only; use --backend onnxruntime on the CPU")
        check_built_for(engine_path, sidecar, flavour, gpu_identity(self.device))
        trt = flavour.module
        data = engine_path.read_bytes()
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(_logger(flavour))
            if flavour.is_rtx():
                validity, diagnostics = self._runtime.get_engine_validity(data)
                if validity == trt.EngineValidity.INVALID:
                    flags = trt.EngineInvalidityDiagnostics.__members__.items()
                    reasons = ", ".join(name.lower() for name, bit in flags if int(diagnostics) & int(bit)) or "no diagnostics"
                    raise BackendError(
                        f"{engine_path.name} cannot run here ({flavour.label} says invalid: {reasons}); "
                        f"rebuild it here: {_rebuild_here(sidecar)}"
                    )
            self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise BackendError(f"{flavour.label} could not load {engine_path}; rebuild it: {_rebuild_hint(sidecar)}")
        engine_max = self._check_interface(engine_path, spec)
        super().__init__(spec, min(max_batch, engine_max))
        self.parity_tolerance = ENGINE_TOLERANCE[sidecar.get("precision", "fp16")]
        self._contexts = threading.local()

    def _check_interface(self, engine_path: Path, spec: RefinerSpec) -> int:
        """Check the engine's tensors against the spec; return the largest batch its profile accepts."""
        trt = self.flavour.module
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

    def _run(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
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


def check_built_for(engine_path: Path, sidecar: dict, flavour: Flavour, gpu: dict) -> None:
    """Engines are specific to the TensorRT version and to the GPU (data-center) or SM targets (RTX): refuse others up front."""
    built_version, hint = sidecar.get("tensorrt"), _rebuild_hint(sidecar)
    here = f"{flavour.label} on {_describe_gpu(gpu)}"
    if flavour.is_rtx():
        targets = sidecar.get("compute_capabilities") or []
        fits = sm_of(gpu) in targets or (targets == [CURRENT_TARGET] and sidecar.get("gpu") == gpu)
        if built_version == flavour.version and fits:
            return
        built = f"TensorRT-RTX {built_version} for {','.join(targets) or 'unknown targets'}"
        hint = _rebuild_here(sidecar)
    else:
        if (built_version, sidecar.get("gpu")) == (flavour.version, gpu):
            return
        built = f"TensorRT {built_version} on {_describe_gpu(sidecar.get('gpu'))}"
    raise BackendError(f"{engine_path.name} was built with {built} but this is {here}; rebuild it here: {hint}")


def _describe_gpu(gpu: dict | None) -> str:
    return "no GPU" if not gpu else f"{gpu.get('name')} (sm {gpu.get('compute_capability')})"


def _rebuild_here(sidecar: dict) -> str:
    """The rebuild command, aimed at this machine's GPU (RTX engines otherwise keep their portable targets)."""
    return re.sub(r"--compute-capability \S+", f"--compute-capability {CURRENT_TARGET}", _rebuild_hint(sidecar))


def _rebuild_hint(sidecar: dict) -> str:
    return sidecar.get("rebuild_command") or "python build_engine.py --refiner CHECKPOINT"
