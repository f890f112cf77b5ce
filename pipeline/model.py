"""The refiner network: backbone embedding x mixture embedding -> sigmoid box in window coordinates.

Input is the raw crop exactly as OpenCV produced it (uint8, NHWC, BGR); the cast, channel order and
mean/std live inside the graph so every backend (torch, ONNX Runtime, TensorRT) gets the same
4x-smaller uint8 upload and nobody re-implements normalisation.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from pipeline.spec import RefinerSpec

SPATIAL_CHANNELS = 32  # channels per grid cell the spatial head keeps


def drop_unused_children(backbone: nn.Module, input_size: int) -> tuple[int, int]:
    """Replace the backbone's children that `forward_features` never calls (its pooled head).

    timm's MobileNetV3 keeps its 1x1 `conv_head` outside `forward_features`; left in place it
    would add unused weights to every checkpoint. Returns the feature map's (channels, grid side).
    """
    called: set[str] = set()
    hooks = [child.register_forward_hook(lambda *_, name=name: called.add(name)) for name, child in backbone.named_children()]
    was_training = backbone.training
    with torch.no_grad():
        features = backbone.eval().forward_features(torch.zeros(1, 3, input_size, input_size))
    backbone.train(was_training)
    for hook in hooks:
        hook.remove()
    for name, _ in list(backbone.named_children()):
        if name not in called:
            setattr(backbone, name, nn.Identity())
    return features.shape[1], features.shape[-1]


class SpatialHead(nn.Module):
    """Feature grid -> embedding that keeps position: 1x1 conv to a few channels, flatten, linear."""

    def __init__(self, channels: int, grid: int, width: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(channels, SPATIAL_CHANNELS, 1, bias=False),
                                    nn.BatchNorm2d(SPATIAL_CHANNELS), nn.ReLU(inplace=True))
        self.embed = nn.Sequential(nn.Flatten(1), nn.Linear(SPATIAL_CHANNELS * grid * grid, width), nn.ReLU(inplace=True))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embed(self.reduce(features))


class RefinerNet(nn.Module):
    """BBRefinement (paper section 2.2) with an optional IoU-quality head.

    Outputs (N, 4) = x1, y1, x2, y2 in window coordinates, or (N, 6) when the spec asks for
    quality: the extra two are the predicted IoU of the input box and of the refined box with the
    true box, which the pipeline uses to decide whether refining helps.
    """

    def __init__(self, spec: RefinerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = timm.create_model(spec.backbone, pretrained=False, num_classes=0)
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.spatial = None
        if spec.head == "spatial":
            channels, grid = drop_unused_children(self.backbone, spec.input_size)
            self.spatial = SpatialHead(channels, grid, width)
        self.mixture = (
            nn.Sequential(nn.Linear(spec.vector_size, width), nn.ReLU(inplace=True), nn.Linear(width, width))
            if spec.use_mixture
            else None
        )
        self.box_head = nn.Linear(width, 4)
        self.quality_head = nn.Linear(width, 2) if spec.predicts_iou else None
        self._start_at_input_box()
        # BGR->RGB and /255 folded into the normalisation constants, in BGR order.
        mean = torch.tensor(spec.mean[::-1], dtype=torch.float32) * 255.0
        std = torch.tensor(spec.std[::-1], dtype=torch.float32) * 255.0
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, 3, 1, 1), persistent=False)

    def _start_at_input_box(self) -> None:
        """Start by predicting the padded input box (and a middling IoU) instead of a zero-size box.

        Four sigmoids at 0.5 describe an empty box whose IoU gradient is zero; starting where the
        detection sits gives an IoU loss something to push from the first step.
        """
        inner = self.spec.padding / (1 + 2 * self.spec.padding)
        start = torch.tensor([inner, inner, 1 - inner, 1 - inner])
        with torch.no_grad():
            self.box_head.weight.mul_(0.01)
            self.box_head.bias.copy_(torch.logit(start))
            if self.quality_head is not None:
                self.quality_head.bias.fill_(1.0)

    def normalise(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC BGR -> normalised float NCHW RGB, in the dtype of the weights."""
        images = crops.permute(0, 3, 1, 2).to(self.pixel_mean.dtype)
        images = (images - self.pixel_mean) / self.pixel_std
        return images.flip(1)

    def embed(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """The embedding both heads read: image features, times the mixture embedding when used."""
        images = self.normalise(crops)
        embedding = self.backbone(images) if self.spatial is None else self.spatial(self.backbone.forward_features(images))
        if self.mixture is not None:
            embedding = embedding * self.mixture(vectors.to(embedding.dtype))
        return embedding

    def forward(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        embedding = self.embed(crops, vectors)
        outputs = [self.box_head(embedding)]
        if self.quality_head is not None:
            outputs.append(self.quality_head(embedding))
        return torch.sigmoid(torch.cat(outputs, dim=1))
