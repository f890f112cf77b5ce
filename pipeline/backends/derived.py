"""The file a runtime executes, found or made from the model file the user named.

Why a table: which runtimes can take which model files follows from it (the registry's `accepts`),
so a runtime declares only the one kind of file it runs. A derived file was written from this
model's spec by this project (export, parity-checked build), so it is paired with that spec instead
of being read again, except an engine, whose sidecar holds its build record.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.backends.base import BackendUnavailable
from pipeline.model.artifacts import ModelFile

WHAT = {".safetensors": "the .safetensors checkpoint", ".onnx": "an .onnx file", ".engine": "a TensorRT .engine"}


def _onnx_of_checkpoint(model: ModelFile) -> ModelFile:
    from pipeline.model.export import cached_onnx

    return ModelFile(cached_onnx(model), model.spec)


def _onnx_beside(model: ModelFile) -> ModelFile:
    beside = model.path.with_suffix(".onnx")
    if not beside.is_file():
        raise BackendUnavailable(f"no ONNX file beside {model.path}")
    return ModelFile(beside, model.spec)


def _engine_beside(model: ModelFile) -> ModelFile:
    beside = model.path.with_suffix(".engine")
    if not beside.is_file():
        raise _no_engine(model)
    return ModelFile.read(beside)


def _engine_of_checkpoint(model: ModelFile) -> ModelFile:
    """The engine build_engine.py made from this very checkpoint in engines/ (it keeps the checkpoint's name)."""
    from pipeline.model import defaults

    built = defaults.ENGINES_DIR / f"{model.path.stem}.engine"
    if built.is_file():
        engine = ModelFile.read(built)
        if engine.sidecar.get("checkpoint_sha256") == model.sha256:
            return engine
    raise _no_engine(model)


def _no_engine(model: ModelFile) -> BackendUnavailable:
    return BackendUnavailable(f"no engine built from {model.path}; build one: python build_engine.py --refiner CHECKPOINT")


DERIVATIONS: dict[tuple[str, str], Callable[[ModelFile], ModelFile]] = {
    (".safetensors", ".onnx"): _onnx_of_checkpoint,  # exported once, cached by content hash under engines/cache/
    (".engine", ".onnx"): _onnx_beside,  # build_engine.py writes both
    (".onnx", ".engine"): _engine_beside,
    (".safetensors", ".engine"): _engine_of_checkpoint,
}


def sources_of(kind: str) -> tuple[str, ...]:
    """The model-file kinds a `kind` file can be found or made from."""
    return tuple(source for source, target in DERIVATIONS if target == kind)


def file_to_run(model: ModelFile, kind: str | None, runtime: str) -> ModelFile:
    """`model` itself when the runtime runs its kind (None: any kind, the runtime reads only the spec), else derived."""
    if kind is None or model.kind == kind:
        return model
    derive = DERIVATIONS.get((model.kind, kind))
    if derive is None:
        raise BackendUnavailable(f"the {runtime} backend needs {WHAT[kind]}, not {model.path.name}")
    return derive(model)
