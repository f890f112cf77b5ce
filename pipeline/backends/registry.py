"""Every refinement runtime in one table with what it can do, and `open_backend`, which picks one for a model file.

Adding a runtime is one module with a RefinerBackend subclass plus one line in REGISTRY. A line
names the class (imported only when that runtime is opened, so importing this module needs none
of the runtimes), the kind of file it runs (other kinds are found or made from the user's file by
pipeline.backends.derived), the devices it computes on, and whether `auto` may pick it. The
runtimes receive the file they run as a ModelFile (read once) and an already resolved device.
"""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.backends.base import BackendOptions, BackendUnavailable, RefinerBackend
from pipeline.backends.derived import WHAT, file_to_run, sources_of
from pipeline.backends.fastest import open_fastest, try_open
from pipeline.core.errors import BackendError
from pipeline.model.artifacts import ModelFile
from pipeline.model.defaults import resolve_device

log = logging.getLogger(__name__)

REMOTE = "remote"  # a server computes: the caller's device does not matter


@dataclass(frozen=True)
class Registered:
    """One runtime and its capabilities, readable without importing it."""

    name: str
    label: str  # how messages name it
    backend: str  # "module:Class", imported on first open
    runs: str | None  # the model-file kind it executes; None: any (it reads only the spec)
    devices: tuple[str, ...]  # device types it computes on
    auto: bool = True  # `auto` may pick it (a client of a server needs its address, so it is never picked)
    timed: bool = False  # on the CPU, `auto` times it against the other timed runtimes and keeps the fastest

    @property
    def accepts(self) -> tuple[str, ...]:
        """Model-file suffixes a user may name for it: the kind it runs and those it is derived from."""
        if self.runs is None:
            return tuple(WHAT)
        return (self.runs, *sources_of(self.runs))

    @property
    def takes_device_tensors(self) -> bool:
        """Whether `refine` also takes crops already on its device (imports the runtime)."""
        return self.backend_class().takes_device_tensors

    def backend_class(self) -> type[RefinerBackend]:
        module, _, name = self.backend.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError as error:  # the runtime's package is not installed here
            raise BackendUnavailable(f"{self.label} is not installed ({error})") from error

    def open(self, model: ModelFile, device: str, max_batch: int, options: BackendOptions) -> RefinerBackend:
        """Find or make the file it runs, check the device, then open the runtime."""
        artifact = file_to_run(model, self.runs, self.name)
        if REMOTE not in self.devices and device.split(":")[0] not in self.devices:
            if self.devices == ("cuda",):
                raise BackendUnavailable(f"{self.label} needs a CUDA GPU")
            raise BackendUnavailable(f"{self.label} runs on {' or '.join(self.devices)}, not {device}")
        return self.backend_class().open(artifact, device, max_batch, options)


# In the order `auto` tries them.
REGISTRY: tuple[Registered, ...] = (
    Registered("tensorrt", "TensorRT", "pipeline.backends.tensorrt:TensorRTBackend", ".engine", ("cuda",)),
    Registered("openvino", "OpenVINO", "pipeline.backends.openvino:OpenVinoBackend", ".onnx", ("cpu",), timed=True),
    Registered("onnxruntime", "ONNX Runtime", "pipeline.backends.onnxruntime:OnnxRuntimeBackend", ".onnx", ("cpu", "cuda"), timed=True),
    Registered("torch", "torch", "pipeline.backends.torch:TorchBackend", ".safetensors", ("cpu", "cuda")),
    Registered("triton", "Triton", "pipeline.backends.triton:TritonBackend", None, (REMOTE,), auto=False),
)
BACKENDS: dict[str, Registered] = {entry.name: entry for entry in REGISTRY}
KINDS: tuple[str, ...] = ("auto", *BACKENDS)


def open_backend(
    kind: str,
    model: ModelFile | Path,
    device: str | None = None,
    max_batch: int = 32,
    *,
    cuda_graphs: bool = False,
    triton_url: str | None = None,
    triton_model: str | None = None,
    triton_timeout_s: float | None = None,
    precision: str | None = None,
) -> RefinerBackend:
    """Open a runtime for a checkpoint (.safetensors), an ONNX file or a TensorRT engine (with its sidecar).

    `auto` tries TensorRT (an engine for this model, the flavour that built it and a GPU), then, on the
    CPU, the fastest of OpenVINO and ONNX Runtime (timed once per model and machine,
    pipeline.backends.fastest; ONNX Runtime alone where OpenVINO is missing or fails), on CUDA ONNX
    Runtime's CUDA provider where usable, then torch. A checkpoint is exported to ONNX once, cached
    by content hash under engines/cache/. `device` None: CUDA when torch sees a GPU, else the CPU.
    `cuda_graphs` applies to the torch backend on CUDA only; `precision` to OpenVINO ("fp32" forces
    full precision; None: BF16 where the CPU has it).
    `triton`: the model `triton_model` (default: the model file's stem, the name build_engine.py
    --triton-repo gives it) on the server at `triton_url`, which must serve the model file's spec, each
    batch answered within `triton_timeout_s` (None: the client's default).
    """
    if kind not in KINDS:
        raise BackendError(f"backend {kind!r} is not one of {', '.join(KINDS)}")
    model = ModelFile.of(model)
    options = BackendOptions(
        cuda_graphs=cuda_graphs, triton_url=triton_url, triton_model=triton_model,
        triton_timeout_s=triton_timeout_s, precision=precision, device_named=device is not None
    )
    if kind != "auto" and REMOTE in BACKENDS[kind].devices:
        return BACKENDS[kind].open(model, REMOTE, max_batch, options)
    device = local_device(device)
    if kind != "auto":
        return BACKENDS[kind].open(model, device, max_batch, options)
    reasons: list[str] = []
    timed = [entry for entry in REGISTRY if entry.auto and entry.timed] if device == "cpu" else []
    for entry in REGISTRY:
        if not entry.auto or (entry in timed and entry is not timed[0]):
            continue
        if entry in timed:  # the CPU runtimes, timed against each other where the first of them stands
            openers = {other.name: functools.partial(other.open, model, device, max_batch, options) for other in timed}
            found = open_fastest(openers, model, options, reasons)
            if found is None:
                continue
            backend, why = found
        else:
            opened = try_open(entry.name, functools.partial(entry.open, model, device, max_batch, options), reasons)
            if opened is None:
                continue
            backend, why = opened, "the first in the registry's order that opens"
        log.info("backend auto -> %s on %s for %s: %s", backend.name, backend.device, model.path, why)
        return backend
    raise BackendError(f"no backend can run {model.path} ({' | '.join(reasons)})")


def local_device(device: str | None) -> str:
    """The one resolution of a device for the local runtimes: None -> cuda or cpu; cuda without a GPU is refused here."""
    resolved = resolve_device(device)
    if resolved.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BackendError(f"device {resolved} was requested but torch sees no CUDA GPU; use --device cpu")
    elif resolved != "cpu":
        raise BackendError(f"device {resolved} is not supported; use cpu or cuda")
    return resolved
