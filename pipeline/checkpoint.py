"""One safetensors file is one whole model: weights plus the RefinerSpec in its metadata."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pipeline.spec import RefinerSpec, SpecError

if TYPE_CHECKING:  # the network (timm, torchvision: seconds to import) is needed only to load weights
    from pipeline.model import RefinerNet

SPEC_KEY = "bbrefinement.spec"


class CheckpointError(RuntimeError):
    """A refiner file is missing, unreadable or was written for another model."""


def save_refiner(model: RefinerNet, path: Path, extra_metadata: dict[str, str] | None = None) -> Path:
    """Write weights and spec atomically (temp file + rename), so a crash never leaves half a model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {SPEC_KEY: model.spec.to_json(), **(extra_metadata or {})}
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    temporary = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(temporary), metadata=metadata)
    temporary.replace(path)
    return path


def read_spec(path: Path) -> RefinerSpec:
    """Read only the spec of a refiner file (cheap: no weights are loaded)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"refiner file {path} does not exist; pass --refiner with a .safetensors file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"refiner file {path} is not a readable safetensors file ({error}); re-download or retrain it") from error
    if SPEC_KEY not in metadata:
        raise CheckpointError(f"{path} holds no refiner spec; it was not written by this project's trainer")
    try:
        return RefinerSpec.from_json(metadata[SPEC_KEY])
    except SpecError as error:
        raise CheckpointError(f"{path}: {error}") from error


def replace_spec(path: Path, spec: RefinerSpec) -> Path:
    """Rewrite a refiner file with another spec of the same network (e.g. new calibration), atomically."""
    model = load_refiner(path)
    if replace(spec, extra={}) != replace(model.spec, extra={}):
        raise CheckpointError(f"{path} holds a {model.spec.name} network; only the spec's extra fields may change")
    model.spec = spec
    with safe_open(str(path), framework="pt") as handle:
        kept = {key: value for key, value in (handle.metadata() or {}).items() if key != SPEC_KEY}
    return save_refiner(model, path, kept)


def load_refiner(path: Path, device: str | torch.device = "cpu") -> RefinerNet:
    """Build the network its spec describes and load its weights, in eval mode."""
    from pipeline.model import RefinerNet

    spec = read_spec(path)
    model = RefinerNet(spec)
    try:
        state = load_file(str(path), device="cpu")
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as error:
        raise CheckpointError(f"{path} does not match its own spec ({str(error).splitlines()[0]}); the file is corrupt") from error
    return model.to(device).eval()
