"""Refinement runtimes behind one interface, and `open_backend`, which picks one for a model file.

The runtimes are imported inside `open_backend`, so importing this package needs neither
onnxruntime nor tensorrt. The model file arrives as a `ModelFile` (read once, by
pipeline.model.artifacts) and each runtime gets it, or the artifact derived from it, with its spec.
Backend classes: pipeline.backends.tensorrt.TensorRTBackend, pipeline.backends.onnxruntime.
OnnxRuntimeBackend, pipeline.backends.torch.TorchBackend, pipeline.backends.triton.TritonBackend (a client:
`auto` never picks it, it needs a server's URL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pipeline.backends.base import RefinerBackend
from pipeline.core.errors import BackendError, ModelFileError
from pipeline.model.artifacts import ModelFile

__all__ = ["KINDS", "RefinerBackend", "open_backend"]

KINDS = ("auto", "tensorrt", "onnxruntime", "torch", "triton")

log = logging.getLogger(__name__)


class _Unavailable(BackendError):
    """This runtime or artifact is simply not here: `auto` moves on quietly instead of warning."""


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
) -> RefinerBackend:
    """Open a runtime for a checkpoint (.safetensors), an ONNX file or a TensorRT engine (with its sidecar).

    `auto` tries TensorRT (an engine for this model, the flavour that built it and a GPU), then ONNX Runtime (CUDA
    provider when usable, else CPU; a checkpoint is exported to ONNX once, cached by content hash
    under engines/cache/), then torch. `cuda_graphs` applies to the torch backend on CUDA only.
    `triton`: the model `triton_model` (default: the model file's stem, the name build_engine.py
    --triton-repo gives it) on the server at `triton_url`, which must serve the model file's spec, each
    batch answered within `triton_timeout_s` (None: the client's default).
    """
    if kind not in KINDS:
        raise BackendError(f"backend {kind!r} is not one of {', '.join(KINDS)}")
    model = ModelFile.of(model)
    if kind == "triton":
        return _open_triton(model, triton_url, triton_model, max_batch, triton_timeout_s)
    if kind != "auto":
        return _OPENERS[kind](model, device, max_batch, cuda_graphs)
    reasons = []
    for candidate, opener in _OPENERS.items():
        try:
            backend = opener(model, device, max_batch, cuda_graphs)
        except (BackendError, ModelFileError) as error:
            (log.info if isinstance(error, _Unavailable) else log.warning)("backend %s skipped: %s", candidate, error)
            reasons.append(f"{candidate}: {error}")
            continue
        log.info("backend auto -> %s on %s for %s", candidate, backend.device, model.path)
        return backend
    raise BackendError(f"no backend can run {model.path} ({' | '.join(reasons)})")


def _open_tensorrt(model: ModelFile, device: str | None, max_batch: int, cuda_graphs: bool) -> RefinerBackend:
    import torch

    from pipeline.backends.tensorrt import TensorRTBackend, TensorRTUnavailable

    engine = _engine_for(model)
    if device == "cpu" or not torch.cuda.is_available():
        raise _Unavailable("TensorRT needs a CUDA GPU")
    try:
        return TensorRTBackend(engine, device, max_batch)
    except TensorRTUnavailable as error:  # the engine's flavour (tensorrt or tensorrt_rtx) is not installed
        raise _Unavailable(str(error)) from error


def _engine_for(model: ModelFile) -> ModelFile:
    """The engine itself, the engine beside an ONNX file, or the engine build_engine.py made from this checkpoint."""
    from pipeline.model.defaults import ENGINES_DIR

    if model.kind == ".engine":
        return model
    beside = model.path.with_suffix(".engine")
    if model.kind == ".onnx" and beside.is_file():
        return ModelFile.read(beside)
    if model.kind == ".safetensors":
        built = ENGINES_DIR / f"{model.path.stem}.engine"  # build_engine.py keeps the checkpoint's name
        if built.is_file():
            engine = ModelFile.read(built)
            if engine.sidecar.get("checkpoint_sha256") == model.sha256:
                return engine
    raise _Unavailable(f"no engine built from {model.path}; build one: python build_engine.py --refiner CHECKPOINT")


def _open_onnxruntime(model: ModelFile, device: str | None, max_batch: int, cuda_graphs: bool) -> RefinerBackend:
    from pipeline.backends.onnxruntime import OnnxRuntimeBackend, onnxruntime

    if onnxruntime is None:
        raise _Unavailable("onnxruntime is not installed")
    return OnnxRuntimeBackend(_onnx_for(model), device, max_batch)


def _onnx_for(model: ModelFile) -> ModelFile:
    """The ONNX file itself, the cached export of a checkpoint, or the ONNX build_engine.py wrote beside an engine.

    A derived file was written from this model's spec by this project (export, parity-checked
    build), so it is paired with that spec instead of being read again.
    """
    from pipeline.model.export import cached_onnx

    if model.kind == ".onnx":
        return model
    if model.kind == ".safetensors":
        return ModelFile(cached_onnx(model), model.spec)
    if model.path.with_suffix(".onnx").is_file():
        return ModelFile(model.path.with_suffix(".onnx"), model.spec)
    raise _Unavailable(f"no ONNX file beside {model.path}")


def _open_torch(model: ModelFile, device: str | None, max_batch: int, cuda_graphs: bool) -> RefinerBackend:
    from pipeline.backends.torch import TorchBackend

    if model.kind != ".safetensors":
        raise _Unavailable(f"the torch backend needs the .safetensors checkpoint, not {model.path.name}")
    return TorchBackend.from_checkpoint(model, device, max_batch, cuda_graphs)


def _open_triton(
    model: ModelFile, url: str | None, served_name: str | None, max_batch: int, timeout_s: float | None
) -> RefinerBackend:
    from pipeline.backends.triton import DEFAULT_INFER_TIMEOUT_S, TritonBackend

    if not url:
        raise BackendError("the triton backend needs the server's gRPC address; pass --triton-url HOST:PORT")
    return TritonBackend(url, served_name or model.path.stem, model.spec, max_batch, timeout_s or DEFAULT_INFER_TIMEOUT_S)


_OPENERS: dict[str, Callable[[ModelFile, str | None, int, bool], RefinerBackend]] = {
    "tensorrt": _open_tensorrt,
    "onnxruntime": _open_onnxruntime,
    "torch": _open_torch,
}
