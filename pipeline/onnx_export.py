"""RefinerNet -> ONNX with the spec inside, the check that an ONNX file is what its spec says, and sidecars.

The graph's interface is the engine's interface: uint8 NHWC BGR "crops" and float32 "vectors" in,
float32 "boxes" out, batch dynamic. TensorRT 11 only builds strongly typed networks, which take their
precision from the ONNX types, so `fp16=True` writes half weights and half arithmetic between the
uint8 input and a float32 output: the caller's buffers are the same for every precision.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import warnings
from pathlib import Path

import onnx
import torch
from onnx import TensorProto
from torch import nn

from pipeline.backends.base import BackendError
from pipeline.checkpoint import SPEC_KEY, load_refiner, read_spec
from pipeline.model import RefinerNet
from pipeline.spec import RefinerSpec, SpecError

CROPS = "crops"
VECTORS = "vectors"
BOXES = "boxes"
OPSET = 17
MAX_BATCH_KEY = "bbrefinement.max_batch"
REPO_ROOT = Path(__file__).resolve().parents[1]
ENGINES_DIR = REPO_ROOT / "engines"
ONNX_CACHE_DIR = ENGINES_DIR / "cache"
CACHE_KEEP = 4  # ONNX exports kept in the cache (about 10 MB each for the committed refiners)


class ArtifactError(BackendError):
    """A built ONNX file or sidecar is missing, unreadable, or disagrees with the spec it carries."""


class _EngineInterface(nn.Module):
    """Export wrapper fixing the graph's edges whatever precision it computes in.

    The uint8 crops are cast first (before the model's NHWC->NCHW transpose), because TensorRT
    takes UINT8 at the network boundary into a Cast, not into arbitrary layers; boxes leave as float32.
    """

    def __init__(self, model: RefinerNet) -> None:
        super().__init__()
        self.model = model
        self.dtype = next(model.parameters()).dtype

    def forward(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        return self.model(crops.to(self.dtype), vectors).float()


def export_onnx(model: RefinerNet, path: Path, max_batch: int, fp16: bool = False) -> Path:
    """Write `model` as ONNX (opset 17, dynamic batch) with its spec in metadata; atomic, checked.

    The model is copied, so the caller's module keeps its device, dtype and train/eval mode.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1; got {max_batch}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = model.spec
    # CPU half kernels are slow; trace in half on the GPU when there is one.
    device = torch.device("cuda" if fp16 and torch.cuda.is_available() else "cpu")
    network = copy.deepcopy(model).to(device).eval()
    if fp16:
        network = network.half()
    batch = min(2, max_batch)  # not 1: a batch of one invites the tracer to fold the batch axis away
    crops = torch.zeros((batch, spec.input_size, spec.input_size, 3), dtype=torch.uint8, device=device)
    vectors = torch.zeros((batch, spec.vector_size), dtype=torch.float32, device=device)
    temporary = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; dynamo needs onnxscript
        torch.onnx.export(
            _EngineInterface(network).eval(),
            (crops, vectors),
            str(temporary),
            dynamo=False,
            opset_version=OPSET,
            input_names=[CROPS, VECTORS],
            output_names=[BOXES],
            dynamic_axes={CROPS: {0: "batch"}, VECTORS: {0: "batch"}, BOXES: {0: "batch"}},
        )
    proto = onnx.load(str(temporary))
    onnx.helper.set_model_props(proto, {SPEC_KEY: spec.to_json(), MAX_BATCH_KEY: str(max_batch)})
    onnx.checker.check_model(proto)
    check_onnx_interface(proto, spec, temporary)
    onnx.save(proto, str(temporary))
    temporary.replace(path)
    return path


def read_onnx_spec(path: Path) -> RefinerSpec:
    """The spec stored in an ONNX file, after checking the graph's inputs and outputs agree with it."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {path} does not exist; build it with: python build_engine.py --refiner CHECKPOINT")
    try:
        proto = onnx.load(str(path))
    except Exception as error:  # protobuf raises its own DecodeError family for truncated files
        raise ArtifactError(f"{path} is not a readable ONNX file ({type(error).__name__}); rebuild it") from error
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    if SPEC_KEY not in metadata:
        raise ArtifactError(f"{path} holds no refiner spec; export it with build_engine.py, not by hand")
    try:
        spec = RefinerSpec.from_json(metadata[SPEC_KEY])
    except SpecError as error:
        raise ArtifactError(f"{path}: {error}") from error
    check_onnx_interface(proto, spec, path)
    return spec


_ELEMENT_NAMES = {TensorProto.UINT8: "uint8", TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16"}


def check_onnx_interface(proto: onnx.ModelProto, spec: RefinerSpec, path: Path) -> None:
    """Raise a one-line ArtifactError unless the graph takes and returns exactly what `spec` implies."""
    size = spec.input_size
    expected = {
        CROPS: (TensorProto.UINT8, ("N", size, size, 3)),
        VECTORS: (TensorProto.FLOAT, ("N", spec.vector_size)),
        BOXES: (TensorProto.FLOAT, ("N", spec.output_size)),
    }
    found = {value.name: _describe(value) for value in [*proto.graph.input, *proto.graph.output]}
    for name, (element, shape) in expected.items():
        if name not in found:
            raise ArtifactError(f"{path} has no tensor {name!r} (has {sorted(found)}); it was not exported by this project")
        if found[name] != (element, shape):
            want = f"{_ELEMENT_NAMES[element]} {_shape_text(shape)}"
            got_element, got_shape = found[name]
            got = f"{_ELEMENT_NAMES.get(got_element, f'type {got_element}')} {_shape_text(got_shape)}"
            raise ArtifactError(f"{path}: {name!r} is {got} but its spec ({spec.name}) needs {want}; re-export the model")


def _describe(value: onnx.ValueInfoProto) -> tuple[int, tuple[str | int, ...]]:
    tensor = value.type.tensor_type
    return tensor.elem_type, tuple(dim.dim_value if dim.HasField("dim_value") else "N" for dim in tensor.shape.dim)


def _shape_text(shape: tuple[str | int, ...]) -> str:
    return "(" + ", ".join(str(dim) for dim in shape) + ")"


def file_sha256(path: Path) -> str:
    """Content hash of a model file; remembered per (path, mtime, size) because auto-selection asks twice."""
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


def cached_onnx(checkpoint: Path, cache_dir: Path | None = None, max_batch: int = 32) -> Path:
    """ONNX for a checkpoint, exported once per checkpoint content (keyed by its SHA-256; default engines/cache/).

    Only the CACHE_KEEP most recently used exports are kept, so runs on many checkpoints (tests,
    training experiments) do not pile up hundreds of MB unasked.
    """
    spec = read_spec(checkpoint)  # a one-line CheckpointError before any hashing or exporting
    cache_dir = Path(cache_dir or ONNX_CACHE_DIR)
    path = cache_dir / file_sha256(checkpoint)[:16] / f"{spec.name}.onnx"
    if not path.is_file():
        export_onnx(load_refiner(checkpoint), path, max_batch)
    path.parent.touch()  # most recently used
    prune_cache(cache_dir, CACHE_KEEP)
    return path


def prune_cache(cache_dir: Path, keep: int) -> None:
    """Delete all but the `keep` most recently used entries (folders) of an export cache."""
    import shutil

    entries = sorted((entry for entry in Path(cache_dir).iterdir() if entry.is_dir()), key=lambda entry: entry.stat().st_mtime)
    for entry in entries[: max(len(entries) - keep, 0)]:
        shutil.rmtree(entry, ignore_errors=True)  # another process may be pruning too


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
        raise ArtifactError(f"{artifact} has no sidecar {path.name}; rebuild it with build_engine.py") from None
    except json.JSONDecodeError as error:
        raise ArtifactError(f"sidecar {path} is not valid JSON ({error}); rebuild it with build_engine.py") from error
    if not isinstance(fields, dict) or "spec" not in fields:
        raise ArtifactError(f"sidecar {path} holds no spec; rebuild it with build_engine.py")
    return fields
