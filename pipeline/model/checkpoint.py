"""One safetensors file is one whole model: weights plus the RefinerSpec in its metadata.

The spec carries a digest of the weights (`RefinerSpec.weights_digest`), written at save and
checked at load: bytes damaged inside the tensor data still parse as a valid file, and would
otherwise refine every box wrongly (or NaN) without a word. Files saved before digests existed
load unchecked; `seal` (python -m train.seal FILE) writes their digest.
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
    """Write weights and spec atomically (temp file + rename), so a crash never leaves half a model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    spec = replace(model.spec, weights_digest=weights_digest(tensors))
    metadata = {SPEC_KEY: spec.to_json(), **(extra_metadata or {})}
    temporary = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(temporary), metadata=metadata)
    temporary.replace(path)
    return path


def replace_spec(path: Path, spec: RefinerSpec) -> Path:
    """Rewrite a refiner file with another spec of the same network (e.g. new calibration), atomically."""
    model = load_refiner(path)
    if replace(spec, extra={}) != replace(model.spec, extra={}):
        raise ModelFileError(f"{path} holds a {model.spec.name} network; only the spec's extra fields may change")
    model.spec = spec
    with safe_open(str(path), framework="pt") as handle:
        kept = {key: value for key, value in (handle.metadata() or {}).items() if key != SPEC_KEY}
    return save_refiner(model, path, kept)


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
        tensors = load_file(str(checkpoint.path), device="cpu")
        check_digest(checkpoint, tensors)
        model.load_state_dict(tensors)
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
