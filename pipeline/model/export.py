"""RefinerNet -> ONNX with the spec inside, and the export cache that lets ONNX Runtime run a checkpoint.

The graph's interface is the engine's interface (pipeline.model.artifacts: CROPS, VECTORS, BOXES):
uint8 NHWC BGR crops and float32 vectors in, float32 boxes out, batch dynamic. TensorRT 11 only
builds strongly typed networks, which take their precision from the ONNX types, so `fp16=True`
writes half weights and half arithmetic between the uint8 input and a float32 output: the caller's
buffers are the same for every precision.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from pipeline.model.artifacts import BOXES, CROPS, SPEC_KEY, VECTORS, ModelFile, check_onnx_interface
from pipeline.model.checkpoint import load_refiner
from pipeline.model.defaults import writable_root
from pipeline.model.net import RefinerNet

OPSET = 17
ONNX_CACHE_DIR = writable_root() / "engines" / "cache"  # a checkout: engines/cache/; installed: ~/.cache/bbrefinement/engines/cache/
CACHE_KEEP = 4  # ONNX exports kept in the cache (about 10 MB each for the committed refiners)


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
    onnx.helper.set_model_props(proto, {SPEC_KEY: spec.to_json()})
    onnx.checker.check_model(proto)
    check_onnx_interface(proto, spec, temporary)
    onnx.save(proto, str(temporary))
    temporary.replace(path)
    return path


def cached_onnx(checkpoint: ModelFile | Path, cache_dir: Path | None = None, max_batch: int = 32) -> Path:
    """ONNX for a checkpoint, exported once per checkpoint content (keyed by its SHA-256; default ONNX_CACHE_DIR).

    Only the CACHE_KEEP most recently used exports are kept, so runs on many checkpoints (tests,
    training experiments) do not pile up hundreds of MB unasked.
    """
    checkpoint = ModelFile.of(checkpoint)
    cache_dir = Path(cache_dir or ONNX_CACHE_DIR)
    path = cache_dir / checkpoint.sha256[:16] / f"{checkpoint.spec.name}.onnx"
    if not path.is_file():
        export_onnx(load_refiner(checkpoint), path, max_batch)
    path.parent.touch()  # most recently used
    prune_cache(cache_dir, CACHE_KEEP)
    return path


def prune_cache(cache_dir: Path, keep: int) -> None:
    """Delete all but the `keep` most recently used exports (folders named by a content hash) of an export cache.

    Other folders in it (openvino/, benchmarks/) belong to other caches and are left alone.
    """
    exports = (entry for entry in Path(cache_dir).iterdir() if entry.is_dir() and _is_digest(entry.name))
    entries = sorted(exports, key=lambda entry: entry.stat().st_mtime)
    for entry in entries[: max(len(entries) - keep, 0)]:
        shutil.rmtree(entry, ignore_errors=True)  # another process may be pruning too


def _is_digest(name: str) -> bool:
    return len(name) == 16 and all(character in "0123456789abcdef" for character in name)
