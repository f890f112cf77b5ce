"""The refiner network: backbone features x mixture data -> box in window coordinates (0..1).

Three box heads (spec.head): "pooled" (the paper's: global average, linear, sigmoid), "spatial"
(the last feature grid kept, flattened) and "edges" (each side a distribution over the positions of
the stride-8 map). All end in 0..1, so every backend and the decode step treat them alike.

Input is the raw crop exactly as OpenCV produced it (uint8, NHWC, BGR); the cast, channel order and
mean/std live inside the graph so every backend (torch, ONNX Runtime, TensorRT) gets the same
4x-smaller uint8 upload and nobody re-implements normalisation.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from pipeline.core.errors import SpecError
from pipeline.core.spec import RefinerSpec

SPATIAL_CHANNELS = 32  # channels per grid cell the spatial head keeps
EDGE_CHANNELS = 48  # channels of the stride-8 map the edges head reads
EDGE_STRIDE = 8  # the edges head locates box sides on the backbone's stride-8 features
FEATURE_TAIL = ("conv_head", "bn2")  # what timm's EfficientNet runs after `blocks` in forward_features


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


def stride_stage(backbone: nn.Module, stride: int) -> tuple[int, int]:
    """(index of the `blocks` stage whose output has this stride, its channels) for timm's
    EfficientNet/MobileNet families, the backbones the edges head supports."""
    for info in getattr(backbone, "feature_info", []):
        module = str(info.get("module", ""))
        if info.get("reduction") == stride and module.startswith("blocks."):
            return int(module.split(".")[1]), int(info["num_chs"])
    raise SpecError(f"the edges head needs a timm EfficientNet/MobileNet backbone with a stride-{stride} stage; "
                     f"{type(backbone).__name__} has none; use --head spatial")


class EdgeHead(nn.Module):
    """Box sides as expectations over positions of a stride-8 feature map (side-aware boundary
    localisation with a distribution per side, as in SABL and GFL's DFL).

    The coarse stride-32 grid says what the object is; the stride-8 map, 4x finer, says where its
    edges are. The mixture vector scales and shifts the fused map (FiLM) so the head knows which
    object the window is about. Each axis is pooled with learned attention over the other axis,
    and a softmax over the positions gives each side a distribution whose mean is the coordinate:
    sub-cell precision without regressing a number from a pooled vector.
    """

    def __init__(self, fine_channels: int, coarse_channels: int, vector_size: int, grid: int, start: torch.Tensor) -> None:
        super().__init__()
        width = EDGE_CHANNELS
        self.fine = nn.Sequential(nn.Conv2d(fine_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.coarse = nn.Sequential(nn.Conv2d(coarse_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.film = nn.Linear(vector_size, 2 * width)
        self.fuse = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.attention = nn.Conv2d(width, 2, 1)  # pooling weights: over rows for x sides, over columns for y sides
        self.x_sides = nn.Conv1d(width, 2, 3, padding=1)  # left, right
        self.y_sides = nn.Conv1d(width, 2, 3, padding=1)  # top, bottom
        positions = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
        self.register_buffer("positions", positions, persistent=False)
        # Learned per-side prior over positions whose mean is `start` (x1, y1, x2, y2): linear
        # interpolation between the two nearest positions, a little mass everywhere else. The head
        # begins at the input box; uniform logits would put both sides of an axis at 0.5, an empty
        # box whose IoU gradient is zero.
        hat = (1 - (positions[None] - start[:, None]).abs() * grid).clamp(min=1e-3)
        self.prior = nn.Parameter(hat.log())
        with torch.no_grad():  # start with FiLM as the identity and the image terms small
            self.film.weight.mul_(0.01)
            self.film.bias.zero_()
            for sides in (self.x_sides, self.y_sides):
                sides.weight.mul_(0.1)
                sides.bias.zero_()

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor, vectors: torch.Tensor | None) -> torch.Tensor:
        """Sides (x1, y1, x2, y2) in window coordinates; `vectors` None for the naive (image-only) refiner."""
        fused = self.fine(fine) + nn.functional.interpolate(self.coarse(coarse), size=fine.shape[-2:], mode="nearest")
        if vectors is not None:
            scale, shift = self.film(vectors.to(fused.dtype)).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
            fused = fused * (1 + scale) + shift
        fused = self.fuse(fused)
        weights = self.attention(fused)
        along_x = (fused * weights[:, :1].softmax(dim=2)).sum(dim=2)  # (N, C, W)
        along_y = (fused * weights[:, 1:].softmax(dim=3)).sum(dim=3)  # (N, C, H)
        positions = self.positions.to(fused.dtype)
        prior = self.prior.to(fused.dtype)
        x1, x2 = ((self.x_sides(along_x) + prior[0::2]).softmax(dim=2) * positions).sum(dim=2).unbind(1)
        y1, y2 = ((self.y_sides(along_y) + prior[1::2]).softmax(dim=2) * positions).sum(dim=2).unbind(1)
        return torch.stack([x1, y1, x2, y2], dim=1)


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
        self.spatial = self.edges = None
        if spec.head in ("spatial", "edges"):
            channels, grid = drop_unused_children(self.backbone, spec.input_size)
            self.spatial = SpatialHead(channels, grid, width)
        if spec.head == "edges":
            self.fine_stage, fine_channels = stride_stage(self.backbone, EDGE_STRIDE)
            grid = -(-spec.input_size // EDGE_STRIDE)
            self.edges = EdgeHead(fine_channels, channels, spec.vector_size, grid, self.start_box())
            self._check_features_match()
        self.mixture = (
            nn.Sequential(nn.Linear(spec.vector_size, width), nn.ReLU(inplace=True), nn.Linear(width, width))
            if spec.use_mixture
            else None
        )
        self.box_head = nn.Linear(width, 4) if self.edges is None else None
        self.quality_head = nn.Linear(width, 2) if spec.predicts_iou else None
        self._start_at_input_box()
        # BGR->RGB and /255 folded into the normalisation constants, in BGR order.
        mean = torch.tensor(spec.mean[::-1], dtype=torch.float32) * 255.0
        std = torch.tensor(spec.std[::-1], dtype=torch.float32) * 255.0
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, 3, 1, 1), persistent=False)

    def start_box(self) -> torch.Tensor:
        """Where the input box sits in its window at inference padding (x1, y1, x2, y2)."""
        inner = self.spec.padding / (1 + 2 * self.spec.padding)
        return torch.tensor([inner, inner, 1 - inner, 1 - inner])

    def _start_at_input_box(self) -> None:
        """Start by predicting the padded input box (and a middling IoU) instead of a zero-size box.

        Four sigmoids at 0.5 describe an empty box whose IoU gradient is zero; starting where the
        detection sits gives an IoU loss something to push from the first step.
        """
        start = self.start_box()
        with torch.no_grad():
            if self.box_head is not None:
                self.box_head.weight.mul_(0.01)
                self.box_head.bias.copy_(torch.logit(start))
            if self.quality_head is not None:
                self.quality_head.bias.fill_(1.0)

    def normalise(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC BGR -> normalised float NCHW RGB, in the dtype of the weights."""
        images = crops.permute(0, 3, 1, 2).to(self.pixel_mean.dtype)
        images = (images - self.pixel_mean) / self.pixel_std
        return images.flip(1)

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(stride-8 map or None, final map): one backbone pass, the fine map kept on the way."""
        if self.edges is None:
            return None, self.backbone.forward_features(images)
        x = self.backbone.bn1(self.backbone.conv_stem(images))
        fine = None
        for index, stage in enumerate(self.backbone.blocks):
            x = stage(x)
            if index == self.fine_stage:
                fine = x
        for name in FEATURE_TAIL:  # EfficientNet's forward_features ends with conv_head + bn2
            x = getattr(self.backbone, name, nn.Identity())(x)
        return fine, x

    @torch.no_grad()
    def _check_features_match(self) -> None:
        """The stage-by-stage pass must equal timm's forward_features, or the spatial head would
        read other features than it was built for."""
        was_training = self.backbone.training
        images = torch.rand(1, 3, self.spec.input_size, self.spec.input_size)
        expected = self.backbone.eval().forward_features(images)
        actual = self.features(images)[1]
        self.backbone.train(was_training)
        if actual.shape != expected.shape or not torch.allclose(actual, expected, atol=1e-5):
            raise SpecError(f"the edges head cannot follow {self.spec.backbone}'s forward_features; use --head spatial")

    def trunk(self, crops: torch.Tensor, vectors: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """(stride-8 map, final map, embedding) - the maps only where a spatial head needs them.

        The embedding (image features times the mixture embedding, when used) is what the pooled
        and spatial box heads and the quality head read.
        """
        images = self.normalise(crops)
        if self.spatial is None:
            fine, coarse, embedding = None, None, self.backbone(images)
        else:
            fine, coarse = self.features(images)
            embedding = self.spatial(coarse)
        if self.mixture is not None:
            embedding = embedding * self.mixture(vectors.to(embedding.dtype))
        return fine, coarse, embedding

    def embed(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        return self.trunk(crops, vectors)[2]

    def forward(self, crops: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        fine, coarse, embedding = self.trunk(crops, vectors)
        if self.edges is not None:
            # already in 0..1 (expectations over positions); the naive refiner ignores the mixture here too
            boxes = self.edges(fine, coarse, vectors if self.mixture is not None else None)
        else:
            boxes = torch.sigmoid(self.box_head(embedding))
        if self.quality_head is None:
            return boxes
        return torch.cat([boxes, torch.sigmoid(self.quality_head(embedding))], dim=1)
