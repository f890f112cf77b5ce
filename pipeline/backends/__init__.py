"""Refinement runtimes behind one interface, and `open_backend`, which picks one for a model file.

The runtimes are imported inside `open_backend`, so importing this package needs neither
onnxruntime nor tensorrt (and pipeline.onnx_export can import BackendError from here).
Backend classes: pipeline.backends.tensorrt.TensorRTBackend, pipeline.backends.onnxruntime.
OnnxRuntimeBackend, pipeline.backends.torch.TorchBackend, pipeline.backends.triton.TritonBackend (a client:
`auto` never picks it, it needs a server's URL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pipeline.backends.base import BackendError, RefinerBackend

__all__ = ["KINDS", "BackendError", "RefinerBackend", "open_backend"]

KINDS = ("auto", "tensorrt", "onnxruntime", "torch", "triton")
MODEL_SUFFIXES = (".safetensors", ".onnx", ".engine")

log = logging.getLogger(__name__)


class _Unavailable(BackendError):
    """This runtime or artifact is simply not here: `auto` moves on quietly instead of warning."""


def open_backend(
    kind: str,
    model_path: Path,
    device: str | None = None,
    max_batch: int = 32,
    *,
    cuda_graphs: bool = False,
    triton_url: str | None = None,
    triton_model: str | None = None,
) -> RefinerBackend:
    """Open a runtime for a checkpoint (.safetensors), an ONNX file or a TensorRT engine (with its sidecar).

    `auto` tries TensorRT (an engine for this model, the flavour that built it and a GPU), then ONNX Runtime (CUDA
    provider when usable, else CPU; a checkpoint is exported to ONNX once, cached by content hash
    under engines/cache/), then torch. `cuda_graphs` applies to the torch backend on CUDA only.
    `triton`: the model `triton_model` (default: the model file's stem, the name build_engine.py
    --triton-repo gives it) on the server at `triton_url`, which must serve the model file's spec.
    """
    if kind not in KINDS:
        raise BackendError(f"backend {kind!r} is not one of {', '.join(KINDS)}")
    model_path = Path(model_path)
    if model_path.suffix not in MODEL_SUFFIXES:
        raise BackendError(f"model file {model_path} is not a {', '.join(MODEL_SUFFIXES)} file")
    if not model_path.is_file():
        raise BackendError(f"model file {model_path} does not exist")
    if kind == "triton":
        return _open_triton(model_path, triton_url, triton_model, max_batch)
    if kind != "auto":
        return _OPENERS[kind](model_path, device, max_batch, cuda_graphs)
    reasons = []
    for candidate, opener in _OPENERS.items():
        try:
            backend = opener(model_path, device, max_batch, cuda_graphs)
        except BackendError as error:
            (log.info if isinstance(error, _Unavailable) else log.warning)("backend %s skipped: %s", candidate, error)
            reasons.append(f"{candidate}: {error}")
            continue
        log.info("backend auto -> %s on %s for %s", candidate, backend.device, model_path)
        return backend
    raise BackendError(f"no backend can run {model_path} ({' | '.join(reasons)})")


def _open_tensorrt(model_path: Path, device: str | None, max_batch: int, cuda_graphs: bool) -> RefinerBackend:
    import torch

    from pipeline.backends.tensorrt import TensorRTBackend, TensorRTUnavailable

    engine = _engine_for(model_path)
    if device == "cpu" or not torch.cuda.is_available():
        raise _Unavailable("TensorRT needs a CUDA GPU")
    try:
        return TensorRTBackend(engine, device, max_batch)
    except TensorRTUnavailable as error:  # the engine's flavour (tensorrt or tensorrt_rtx) is not installed
        raise _Unavailable(str(error)) from error


def _engine_for(model_path: Path) -> Path:
    """The engine itself, the engine beside an ONNX file, or the engine build_engine.py made from this checkpoint."""
    from pipeline.onnx_export import ENGINES_DIR, file_sha256, read_sidecar

    if model_path.suffix == ".engine":
        return model_path
    if model_path.suffix == ".onnx" and model_path.with_suffix(".engine").is_file():
        return model_path.with_suffix(".engine")
    if model_path.suffix == ".safetensors":
        engine = ENGINES_DIR / f"{model_path.stem}.engine"  # build_engine.py keeps the checkpoint's name
        if engine.is_file() and read_sidecar(engine).get("checkpoint_sha256") == file_sha256(model_path):
            return engine
    raise _Unavailable(f"no engine built from {model_path}; build one: python build_engine.py --refiner CHECKPOINT")


def _open_onnxruntime(model_path: Path, device: str | None, max_batch: int, cuda_graphs: bool) -> RefinerBackend:
    from pipeline.backends.onnxruntime import OnnxRuntimeBackend, onnxruntime

    if onnxruntime is None:
        raise _Unavailable("onnxruntime is not installed")
    return OnnxRuntimeBackend(_onnx_for(model_path), device, max_batch)


def _onnx_for(model_path: Path) -> Path:
    from pipeline.onnx_export import cached_onnx

    if model_path.suffix == ".onnx":
        return model_path
    if model_path.suffix == ".safetensors":
        return cached_onnx(model_path)
    if model_path.with_suffix(".onnx").is_file():  # build_engine.py writes the ONNX beside the engine
        return model_path.with_suffix(".onnx")
    raise _Unavailable(f"no ONNX file beside {model_path}")


def _open_torch(model_path: Path, device: str | None, max_batch: int, cuda_graphs: bool) -> RefinerBackend:
    from pipeline.backends.torch import TorchBackend

    if model_path.suffix != ".safetensors":
        raise _Unavailable(f"the torch backend needs the .safetensors checkpoint, not {model_path.name}")
    return TorchBackend.from_checkpoint(model_path, device, max_batch, cuda_graphs)


def _open_triton(model_path: Path, url: str | None, model: str | None, max_batch: int) -> RefinerBackend:
    from pipeline.artifacts import read_model_spec
    from pipeline.backends.triton import TritonBackend

    if not url:
        raise BackendError("the triton backend needs the server's gRPC address; pass --triton-url HOST:PORT")
    return TritonBackend(url, model or model_path.stem, read_model_spec(model_path), max_batch)


_OPENERS: dict[str, Callable[[Path, str | None, int, bool], RefinerBackend]] = {
    "tensorrt": _open_tensorrt,
    "onnxruntime": _open_onnxruntime,
    "torch": _open_torch,
}
