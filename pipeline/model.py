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

    def forward(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        embedding = self.backbone(self.normalise(crops))
        if self.mixture is not None:
            embedding = embedding * self.mixture(vectors.to(embedding.dtype))
        outputs = [self.box_head(embedding)]
        if self.quality_head is not None:
            outputs.append(self.quality_head(embedding))
        return torch.sigmoid(torch.cat(outputs, dim=1))
