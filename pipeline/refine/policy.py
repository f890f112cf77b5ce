"""How much of a refined box to take: the replace, gate and blend policies and the calibration they read.

Why a module of its own: the policy is the one place a refiner's predicted IoUs turn into a
decision, and benchmarks (accuracy, calibrate, latency, mixing) score it apart from cropping.
A policy is checked once, by `check_policy`, when a FrameRefiner is made; these functions trust it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from pipeline.core.calibration import GENERIC_PROFILE, Calibration
from pipeline.core.errors import UsageError
from pipeline.core.spec import RefinerSpec

Policy = Literal["replace", "gate", "blend"]
POLICIES: tuple[Policy, ...] = ("replace", "gate", "blend")
NEGLIGIBLE_WEIGHT = 1e-6


def choose_profile(spec: RefinerSpec, detector_profile: str = GENERIC_PROFILE, requested: str | None = None) -> tuple[str, Calibration]:
    """The calibration profile a run uses, and its name.

    `requested` (--profile) must be one of the file's profiles ("generic" always exists: the
    defaults of an uncalibrated file); otherwise the detector's own profile where the file has one,
    else the generic one.
    """
    if requested is not None:
        if requested not in spec.profiles and requested != GENERIC_PROFILE:
            raise UsageError(f"this refiner has no calibration profile {requested!r}; it has "
                             f"{', '.join(sorted({*spec.profiles, GENERIC_PROFILE}))}, or calibrate one with "
                             f"python -m benchmarks calibrate --profile {requested} --write")
        name = requested
    else:
        name = detector_profile if detector_profile in spec.profiles else GENERIC_PROFILE
    return name, spec.profiles.get(name, Calibration())


def default_policy(spec: RefinerSpec) -> Policy:
    """Blend when the model predicts its own quality, otherwise trust every refined box.

    Blend, not gate or replace: on the committed person refiners it was the only policy that made
    neither precise set (sigma 0.05 jitter, mot17-mini's detections) worse, at about 1 AP less
    than replace on poor boxes (benchmarks/results/cpu-2core/).
    """
    return "blend" if spec.predicts_iou else "replace"


def refined_weight(outputs: np.ndarray, policy: Policy, calibration: Calibration = Calibration(),
                   box_sides: np.ndarray | None = None) -> np.ndarray:
    """Per output, how much of the refined box to take: 0 keeps the input box, 1 takes the refined one.

    "replace": always 1 (the paper's behaviour). "gate": 1 only where the predicted IoU of the
    refined box (column 5) beats the predicted IoU of the input box (column 4), so the refiner
    cannot make a detection it believes to be worse. "blend": a soft gate, sigmoid of the predicted
    gain over the calibration's temperature, which averages the two boxes where the refiner is unsure.
    The calibration's margin is subtracted from the predicted gain first; with `box_sides` (the
    longer side of each input box, px), boxes above the calibration's max_box_side keep weight 0.
    """
    if policy == "replace":
        return np.ones(len(outputs))
    gain = outputs[:, 5].astype(np.float64) - outputs[:, 4] - calibration.gain_margin
    if box_sides is not None:
        gain = np.where(box_sides > calibration.max_box_side, -np.inf, gain)
    if policy == "gate":
        return (gain > 0).astype(np.float64)
    weight = 1.0 / (1.0 + np.exp(-gain / calibration.blend_temperature))
    return np.where(weight < NEGLIGIBLE_WEIGHT, 0.0, weight)  # a move below a millionth of the way is no move: status "gated"


def leaves_every_box_alone(policy: Policy, calibration: Calibration) -> bool:
    """True when even the largest possible predicted gain (1 IoU) moves no box: what `benchmarks
    calibrate` writes when refining did not pay on the boxes it was fitted on."""
    largest_gain = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])  # predicted IoU 0 in, 1 out
    return bool(refined_weight(largest_gain, policy, calibration)[0] == 0)


def rescored(scores: np.ndarray, outputs: np.ndarray, weights: np.ndarray, power: float) -> np.ndarray:
    """Scores x (predicted IoU of the output box) ** power; the output box's IoU is the two
    predictions (columns 4, 5) mixed as the boxes were, by `weights`."""
    if power == 0:
        return scores
    fit = np.clip(outputs[:, 4] + weights * (outputs[:, 5] - outputs[:, 4]), 1e-6, 1.0)
    return scores * fit**power


def check_policy(policy: Policy, spec: RefinerSpec) -> Policy:
    """The policy, if this refiner can follow it: gate and blend need a refiner that predicts IoU."""
    if policy not in POLICIES:
        raise UsageError(f"unknown refine policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy != "replace" and not spec.predicts_iou:
        raise UsageError(f"the {policy} policy needs a refiner that predicts IoU; use --policy replace")
    return policy
