"""One safetensors file is one whole model: weights plus the RefinerSpec in its metadata."""

from __future__ import annotations

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


def replace_spec(path: Path, spec: RefinerSpec) -> Path:
    """Rewrite a refiner file with another spec of the same network (e.g. new calibration profiles), atomically."""
    model = load_refiner(path)
    if spec != model.spec:  # profiles and extra are not part of a spec's identity
        raise ModelFileError(f"{path} holds a {model.spec.name} network; only the spec's calibration profiles and extra fields may change")
    model.spec = spec
    with safe_open(str(path), framework="pt") as handle:
        kept = {key: value for key, value in (handle.metadata() or {}).items() if key != SPEC_KEY}
    return save_refiner(model, path, kept)


def load_refiner(checkpoint: ModelFile | Path, device: str | torch.device = "cpu") -> RefinerNet:
    """Build the network its spec describes and load its weights, in eval mode."""
    from pipeline.model.net import RefinerNet

    checkpoint = ModelFile.of(checkpoint)
    if checkpoint.kind != ".safetensors":
        raise ModelFileError(f"weights are loaded from a .safetensors checkpoint, not {checkpoint.path.name}")
    model = RefinerNet(checkpoint.spec)
    try:
        model.load_state_dict(load_file(str(checkpoint.path), device="cpu"))
    except (SafetensorError, RuntimeError, OSError) as error:
        raise ModelFileError(
            f"{checkpoint.path} does not match its own spec ({str(error).splitlines()[0]}); the file is corrupt"
        ) from error
    return model.to(device).eval()
