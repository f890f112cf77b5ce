"""Calibration profiles: how far to trust a refiner behind one detector, typed fields of its spec.

Why per detector: the same refiner gains +4 to +13 AP on a poor detector's boxes and nothing on a
precise one's (YOLOv8n), so how much of a refined box to take, and which boxes are worth cropping
at all, is fitted per detector (`python -m benchmarks calibrate --profile NAME`) and travels in the
model file. "generic" is the profile of detectors nobody calibrated for (detection files, jitter).
Pure data and its checks; the gate's arithmetic is pipeline.refine.gate, the policy's
pipeline.refine.policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.errors import SpecError

GENERIC_PROFILE = "generic"
BLEND_TEMPERATURE = 0.05  # blend weight = sigmoid(predicted gain / T): +0.05 IoU takes 73% of the refined box
LEGACY_PREFIX = "calibration."  # how files written before profiles stored one calibration in the spec's `extra`
# What the gate knows of a box before cropping, besides its longer side (binned) and class (offset):
# detector score, log2 of the box's share of the frame's area, log2 of width / height, log2 of the
# number of boxes the refiner could refine in the frame.
GATE_FEATURES = ("score", "log2_area_share", "log2_aspect", "log2_boxes_in_frame")


@dataclass(frozen=True)
class GateModel:
    """Expected IoU gain of refining a box, from what is known before cropping it; a box is cropped
    and sent to the network only where that beats `threshold`.

    expected gain = side_gain[bin of the longer side] + sum(slopes * (features - centres))
                    + class_gain[class] (0 for a class not seen in calibration).
    A least-squares fit on real per-box gains (pipeline.refine.gate.fit_gate): readable as it is
    stored, e.g. side_gain says what a typical box of each size gained.
    """

    side_edges: tuple[float, ...]  # px, ascending; bin i is [edges[i], edges[i + 1]), the last one open
    side_gain: tuple[float, ...]  # one per bin
    slopes: tuple[float, ...]  # one per GATE_FEATURES
    centres: tuple[float, ...]  # the features' means on the calibration boxes
    class_gain: tuple[tuple[str, float], ...] = ()  # refiner class name, offset
    threshold: float = -math.inf  # refine where expected gain > threshold; inf: no box
    boxes: int = 0  # calibration boxes it was fitted on, for the record

    def __post_init__(self) -> None:
        object.__setattr__(self, "side_edges", tuple(float(v) for v in self.side_edges))
        object.__setattr__(self, "side_gain", tuple(float(v) for v in self.side_gain))
        object.__setattr__(self, "slopes", tuple(float(v) for v in self.slopes))
        object.__setattr__(self, "centres", tuple(float(v) for v in self.centres))
        object.__setattr__(self, "class_gain", tuple((str(name), float(gain)) for name, gain in self.class_gain))
        edges = self.side_edges
        if len(edges) < 2 or len(self.side_gain) != len(edges) - 1 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise SpecError(f"a gate needs ascending box-side edges and one gain per bin; got {edges} and {self.side_gain}")
        if len(self.slopes) != len(GATE_FEATURES) or len(self.centres) != len(GATE_FEATURES):
            raise SpecError(f"a gate needs one slope and centre per feature {GATE_FEATURES}")
        if math.isnan(self.threshold):
            raise SpecError("a gate's threshold is NaN; recalibrate the refiner")


@dataclass(frozen=True)
class Calibration:
    """One detector's profile: the policy's constants and the gate before the network.

    blend_temperature, gain_margin: the blend policy takes sigmoid((predicted gain - margin) / T)
    of the refined box; a margin asks for a clearer predicted gain before a box moves (a large one
    leaves every box alone), the gate policy takes the refined box where the gain beats the margin.
    score_power: output score = detector score x (predicted IoU of the output box) ** power; 0
    leaves the detector's scores alone.
    max_box_side: blend and gate leave a box whose longer side is above this many pixels alone (the
    refiner sees it shrunk, coarser than the detector saw it); replace refines every box.
    gate: which boxes are worth cropping at all (None: every box).
    """

    blend_temperature: float = BLEND_TEMPERATURE
    gain_margin: float = 0.0
    score_power: float = 0.0
    fitted_on: str = ""  # what it was fitted on, for the record
    max_box_side: float = field(default=math.inf, kw_only=True)
    gate: GateModel | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not self.blend_temperature > 0 or not self.score_power >= 0 or not self.max_box_side > 0:
            raise SpecError(f"calibration needs a positive blend temperature and box side and a non-negative score power; got {self}")
        if isinstance(self.gate, dict):  # read back from JSON
            object.__setattr__(self, "gate", GateModel(**self.gate))

    @classmethod
    def from_fields(cls, fields: Any) -> Calibration:
        """A profile from its JSON object (what `dataclasses.asdict` wrote)."""
        if not isinstance(fields, dict):
            raise SpecError("a calibration profile is not a JSON object; the model file is corrupt")
        try:
            return cls(**fields)
        except TypeError as error:
            raise SpecError(f"a calibration profile does not fit this version ({error}); recalibrate the refiner") from error

    @classmethod
    def from_legacy(cls, values: dict[str, str]) -> Calibration:
        """The one calibration a file written before profiles kept as `calibration.*` strings in `extra`."""
        return cls(float(values.get("blend_temperature", BLEND_TEMPERATURE)), float(values.get("gain_margin", 0.0)),
                   float(values.get("score_power", 0.0)), values.get("fitted_on", ""),
                   max_box_side=float(values.get("max_box_side", math.inf)))


def split_legacy(extra: dict[str, str]) -> tuple[dict[str, str], Calibration | None]:
    """`extra` without the legacy `calibration.*` keys, and the calibration they held (None if none)."""
    legacy = {key[len(LEGACY_PREFIX):]: value for key, value in extra.items() if key.startswith(LEGACY_PREFIX)}
    if not legacy:
        return extra, None
    rest = {key: value for key, value in extra.items() if not key.startswith(LEGACY_PREFIX)}
    return rest, Calibration.from_legacy(legacy)
