"""Model files: one `ModelFile.read` for every kind (.safetensors, .onnx, .engine), and sidecars.

Why one reader: a refiner file named on the command line is checked and its spec read once, here;
the `ModelFile` that comes back (path, spec, and an engine's sidecar) is what the builder, the
backend factory and the backends take, so none of them opens the file again to learn its spec.
Reading a spec loads no weights: the run checks the detector's classes against the refiner's
before it pays for loading or exporting the refiner (seconds).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import ModelFileError, SpecError
from pipeline.core.spec import RefinerSpec

if TYPE_CHECKING:
    import onnx

SPEC_KEY = "bbrefinement.spec"  # checkpoint metadata and ONNX metadata_props key holding RefinerSpec.to_json()
MODEL_SUFFIXES = (".safetensors", ".onnx", ".engine")
# The graph's interface is the engine's interface: uint8 NHWC BGR crops and float32 mixture vectors in, float32 boxes out.
CROPS, VECTORS, BOXES = "crops", "vectors", "boxes"


@dataclass(frozen=True)
class ModelFile:
    """A refiner file that exists, is of a known kind and carries a valid spec (`sidecar`: an engine's build record)."""

    path: Path
    spec: RefinerSpec
    sidecar: dict = field(default_factory=dict, compare=False)

    @classmethod
    def read(cls, path: Path | str) -> ModelFile:
        """Check the file and read its spec: checkpoint metadata, ONNX metadata (graph checked too) or engine sidecar."""
        path = Path(path)
        if path.suffix not in MODEL_SUFFIXES:
            raise ModelFileError(f"refiner {path} is not a {', '.join(MODEL_SUFFIXES)} file; name a refiner model file")
        if not path.is_file():
            raise ModelFileError(f"refiner {path} does not exist; name an existing refiner model file")
        if path.suffix == ".engine":
            sidecar = read_sidecar(path)
            return cls(path, _spec_from(path, json.dumps(sidecar["spec"])), sidecar)
        reader = _checkpoint_spec if path.suffix == ".safetensors" else _onnx_spec
        return cls(path, reader(path))

    @classmethod
    def of(cls, model: ModelFile | Path | str) -> ModelFile:
        """`model` as it is when already read, else read now: every public entry takes either."""
        return model if isinstance(model, ModelFile) else cls.read(model)

    @property
    def kind(self) -> str:
        return self.path.suffix

    @cached_property
    def sha256(self) -> str:
        """Content hash: names the ONNX export cache entry and ties an engine to its checkpoint."""
        return file_sha256(self.path)


def read_spec(path: Path | str) -> RefinerSpec:
    """The RefinerSpec of any refiner file, without loading weights."""
    return ModelFile.read(path).spec


def _spec_from(path: Path, text: str) -> RefinerSpec:
    try:
        return RefinerSpec.from_json(text)
    except SpecError as error:
        raise SpecError(f"{path}: {error}") from None


def _checkpoint_spec(path: Path) -> RefinerSpec:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"refiner file {path} is not a readable safetensors file ({error}); re-download or retrain it") from None
    if SPEC_KEY not in metadata:
        raise ModelFileError(f"{path} holds no refiner spec; it was not written by this project's trainer")
    return _spec_from(path, metadata[SPEC_KEY])


def _onnx_spec(path: Path) -> RefinerSpec:
    import onnx

    try:
        proto = onnx.load(str(path))
    except Exception as error:  # protobuf raises its own DecodeError family for truncated files
        raise ModelFileError(f"{path} is not a readable ONNX file ({type(error).__name__}); rebuild it") from error
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    if SPEC_KEY not in metadata:
        raise ModelFileError(f"{path} holds no refiner spec; export it with build_engine.py, not by hand")
    spec = _spec_from(path, metadata[SPEC_KEY])
    check_onnx_interface(proto, spec, path)
    return spec


def check_onnx_interface(proto: onnx.ModelProto, spec: RefinerSpec, path: Path) -> None:
    """Raise a one-line ModelFileError unless the graph takes and returns exactly what `spec` implies."""
    from onnx import TensorProto

    element_names = {TensorProto.UINT8: "uint8", TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16"}
    size = spec.input_size
    expected = {
        CROPS: (TensorProto.UINT8, ("N", size, size, 3)),
        VECTORS: (TensorProto.FLOAT, ("N", spec.vector_size)),
        BOXES: (TensorProto.FLOAT, ("N", spec.output_size)),
    }
    found = {value.name: _describe(value) for value in [*proto.graph.input, *proto.graph.output]}
    for name, (element, shape) in expected.items():
        if name not in found:
            raise ModelFileError(f"{path} has no tensor {name!r} (has {sorted(found)}); it was not exported by this project")
        if found[name] != (element, shape):
            want = f"{element_names[element]} {_shape_text(shape)}"
            got_element, got_shape = found[name]
            got = f"{element_names.get(got_element, f'type {got_element}')} {_shape_text(got_shape)}"
            raise ModelFileError(f"{path}: {name!r} is {got} but its spec ({spec.name}) needs {want}; re-export the model")


def _describe(value: onnx.ValueInfoProto) -> tuple[int, tuple[str | int, ...]]:
    tensor = value.type.tensor_type
    return tensor.elem_type, tuple(dim.dim_value if dim.HasField("dim_value") else "N" for dim in tensor.shape.dim)


def _shape_text(shape: tuple[str | int, ...]) -> str:
    return "(" + ", ".join(str(dim) for dim in shape) + ")"


def file_sha256(path: Path) -> str:
    """Content hash of a file; remembered per (path, mtime, size), so a file is hashed once per process."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(artifact: Path) -> Path:
    """`x.onnx` -> `x.onnx.json`: the ONNX and the engine of one model share a stem, so a sidecar keeps the suffix."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_sidecar(artifact: Path, fields: dict) -> Path:
    path = sidecar_path(artifact)
    path.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(artifact: Path) -> dict:
    path = sidecar_path(artifact)
    try:
        fields = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{artifact} has no sidecar {path.name}; rebuild it with build_engine.py") from None
    except json.JSONDecodeError as error:
        raise ModelFileError(f"sidecar {path} is not valid JSON ({error}); rebuild it with build_engine.py") from error
    if not isinstance(fields, dict) or "spec" not in fields:
        raise ModelFileError(f"sidecar {path} holds no spec; rebuild it with build_engine.py")
    return fields
