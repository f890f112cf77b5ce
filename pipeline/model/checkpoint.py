"""One safetensors file is one whole model: weights plus the RefinerSpec in its metadata.

The spec carries a digest of the weights (`RefinerSpec.weights_digest`), written at save and
checked at load: bytes damaged inside the tensor data still parse as a valid file, and would
otherwise refine every box wrongly (or NaN) without a word. Files saved before digests existed
load unchecked; `seal` (python -m train.seal FILE) writes their digest.

Storage precision: training writes float32 (what its validation measured); a committed refiner is
stored as float16 (`half_precision_copy`, command `python -m train.export_fp16`), half the clone
size, its boxes within 0.1 px of the float32 file's (tests/pipeline/model/test_checkpoint.py).
Loading always gives float32 weights, whatever the file holds; the backends cast from there.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pipeline.core.errors import ModelFileError
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import SPEC_KEY, ModelFile

if TYPE_CHECKING:  # the network (timm, torchvision: seconds to import) is needed only to load weights
    from pipeline.model.net import RefinerNet

DIGEST_PREFIX = "sha256:"
log = logging.getLogger(__name__)


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order: the same for the same weights
    whatever the file's metadata (spec, calibration, training record) says."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return DIGEST_PREFIX + digest.hexdigest()


def save_refiner(model: RefinerNet, path: Path, extra_metadata: dict[str, str] | None = None) -> Path:
    """Write weights (float32) and spec atomically (temp file + rename), so a crash never leaves half a model."""
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    return write_checkpoint(tensors, model.spec, extra_metadata or {}, Path(path))


def half_precision_copy(source: Path, target: Path) -> Path:
    """Write `source` with every floating tensor as float16 (spec and metadata kept) to `target`.

    Refuses a weight float16 cannot hold (beyond +-65504), rather than store an infinity.
    """
    tensors, spec, extra = read_checkpoint(Path(source))
    halved = {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in tensors.items()}
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.equal(tensor.isfinite(), halved[name].isfinite()):
            raise ModelFileError(f"{source}: tensor {name} has values beyond float16's range; keep this model in float32")
    return write_checkpoint(halved, spec, extra, Path(target))


def replace_spec(path: Path, spec: RefinerSpec) -> Path:
    """Rewrite a refiner file with another spec of the same network (e.g. new calibration), atomically.

    The weights are copied as stored (a float16 file stays float16).
    """
    tensors, current, extra = read_checkpoint(Path(path))
    if replace(spec, extra={}) != replace(current, extra={}):
        raise ModelFileError(f"{path} holds a {current.name} network; only the spec's calibration profiles and extra fields may change")
    return write_checkpoint(tensors, spec, extra, Path(path))


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], RefinerSpec, dict[str, str]]:
    """Tensors as stored (their dtype kept), the spec, and the other metadata (e.g. the training record)."""
    spec = ModelFile.read(path).spec
    with safe_open(str(path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (a handle is no dict)
        extra = {key: value for key, value in (handle.metadata() or {}).items() if key != SPEC_KEY}
    return tensors, spec, extra


def write_checkpoint(tensors: dict[str, torch.Tensor], spec: RefinerSpec, extra: dict[str, str], path: Path) -> Path:
    """The one place a checkpoint is written: tensors as given, the spec (with the digest of those tensors, as
    stored) and `extra` in the metadata, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    spec = replace(spec, weights_digest=weights_digest(tensors))
    save_file(tensors, str(temporary), metadata={SPEC_KEY: spec.to_json(), **extra})
    temporary.replace(path)
    return path


def seal(path: Path) -> str:
    """Rewrite a checkpoint with the digest of its weights in its spec (a file saved before digests existed);
    weights, spec and other metadata are kept. Returns the digest."""
    replace_spec(path, ModelFile.read(path).spec)
    return ModelFile.read(path).spec.weights_digest


def load_refiner(checkpoint: ModelFile | Path, device: str | torch.device = "cpu") -> RefinerNet:
    """Build the network its spec describes and load its weights, in eval mode."""
    from pipeline.model.net import RefinerNet

    checkpoint = ModelFile.of(checkpoint)
    if checkpoint.kind != ".safetensors":
        raise ModelFileError(f"weights are loaded from a .safetensors checkpoint, not {checkpoint.path.name}")
    model = RefinerNet(checkpoint.spec)
    try:
        stored = load_file(str(checkpoint.path), device="cpu")
        check_digest(checkpoint, stored)
        model.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in stored.items()})
    except (SafetensorError, RuntimeError, OSError) as error:
        raise ModelFileError(
            f"{checkpoint.path} does not match its own spec ({str(error).splitlines()[0]}); the file is corrupt"
        ) from error
    return model.to(device).eval()


def check_digest(checkpoint: ModelFile, tensors: dict[str, torch.Tensor]) -> None:
    """Raise a one-line ModelFileError when the weights are not the ones the spec's digest was taken of."""
    expected = checkpoint.spec.weights_digest
    if not expected:
        log.info("%s has no weights digest; seal it (python -m train.seal FILE) to have damage detected", checkpoint.path)
        return
    if weights_digest(tensors) != expected:
        raise ModelFileError(
            f"{checkpoint.path}: its weights do not match the digest in its spec (damaged or altered); "
            "re-download or re-train it"
        )
