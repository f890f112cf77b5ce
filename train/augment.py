"""Training samples that look like inference: a detector-like box, its padded crop, its mixture.

The window is built around a *distorted* box, because at run time the refiner only ever sees
a detector's imperfect box. The distortion's size is drawn per box (log-uniformly or uniformly),
so training covers near-perfect boxes (which the refiner must leave alone) up to badly placed ones.

The window's padding is, by default, the inference padding: then the input box always sits at
the same place in the crop, exactly as at run time, and "keep the input box" is something the
network can learn. Random padding per side (the paper's augmentation) hides where the input box
was, so every output is a guess from pixels alone; it stays available for the ablation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.core.geometry import crop_windows, encode, mixture_vectors
from pipeline.refine.crops import crop_one


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of every random change, as fractions of the box's width or height."""

    jitter_min: float = 0.005
    jitter_max: float = 0.25
    jitter_spread: str = "log"  # "log": sigma log-uniform in [min, max]; "uniform": uniform
    padding_min: float | None = None  # None: the spec's (inference) padding on every side
    padding_max: float | None = None
    centre_noise: float = 0.02
    photometric: bool = True
    clahe_probability: float = 0.1
    flip_probability: float = 0.5


@dataclass(frozen=True)
class Sample:
    crop: np.ndarray  # (S, S, 3) uint8 BGR
    vector: np.ndarray  # mixture vector, float32
    target: np.ndarray  # GT box in window coordinates
    input_box: np.ndarray  # the distorted (detector-like) box in window coordinates


JITTER_SPREADS = ("log", "uniform")


def distort_box(
    rng: np.random.Generator, box: np.ndarray, jitter_min: float, jitter_max: float, spread: str = "log"
) -> np.ndarray:
    """Move each side by a normal draw of sigma x width/height, sigma drawn per box.

    "log" puts as many boxes between 0.5% and 5% error as between 5% and 50% (precise detectors);
    "uniform" spends more of the budget on the badly placed boxes that refinement can lift most.
    """
    if spread == "log":
        sigma = np.exp(rng.uniform(np.log(jitter_min), np.log(jitter_max)))
    elif spread == "uniform":
        sigma = rng.uniform(jitter_min, jitter_max)
    else:
        raise ValueError(f"unknown jitter spread {spread!r}; choose one of {', '.join(JITTER_SPREADS)}")
    width, height = box[2] - box[0], box[3] - box[1]
    moved = box + rng.normal(0.0, sigma, 4) * np.array([width, height, width, height])
    # Keep a valid box: a detector never returns one with its sides crossed.
    centre = (moved[:2] + moved[2:]) / 2
    half = np.maximum((moved[2:] - moved[:2]) / 2, 0.05 * np.array([width, height]))
    return np.concatenate([centre - half, centre + half])


def jitter_hsv(rng: np.random.Generator, crop: np.ndarray) -> np.ndarray:
    """Linear hue/saturation/value shifts and a non-linear (gamma) value curve."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
    hsv[..., 1] *= rng.uniform(0.6, 1.4)
    hsv[..., 2] = 255.0 * (hsv[..., 2] / 255.0) ** rng.uniform(0.6, 1.6) * rng.uniform(0.75, 1.25)
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)


def equalise(crop: np.ndarray) -> np.ndarray:
    """CLAHE on the lightness channel."""
    lab = cv2.cvtColor(crop, cv2.COLOR_BGR2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def flip_horizontally(sample: Sample, num_classes: int) -> Sample:
    """Mirror the crop and every x coordinate it carries (boxes and the mixture centre)."""
    mirror = lambda b: np.array([1 - b[2], b[1], 1 - b[0], b[3]])
    vector = sample.vector.copy()
    vector[num_classes] = 1 - vector[num_classes]
    return Sample(np.ascontiguousarray(sample.crop[:, ::-1]), vector, mirror(sample.target), mirror(sample.input_box))


def make_sample(
    rng: np.random.Generator,
    image: np.ndarray,
    gt_box: np.ndarray,
    class_id: int,
    num_classes: int,
    input_size: int,
    config: AugmentConfig,
    inference_padding: float,
    validation: bool = False,
    detection: np.ndarray | None = None,
) -> Sample:
    """One training sample, or a validation one (inference padding, no photometric change, no flip).

    The input box is `detection` (a real detector's box) where given, else the truth distorted.
    """
    if detection is None:
        detection = distort_box(rng, gt_box, config.jitter_min, config.jitter_max, config.jitter_spread)
    if validation or config.padding_min is None:
        sides = inference_padding
    else:
        sides = rng.uniform(config.padding_min, config.padding_max, (1, 4))
    window = crop_windows(detection[None], sides)
    crop = np.empty((input_size, input_size, 3), dtype=np.uint8)
    crop_one(image, window[0], crop)
    vector = mixture_vectors(np.array([class_id]), detection[None], window, num_classes)[0]
    sample = Sample(crop, vector, encode(gt_box[None], window)[0], encode(detection[None], window)[0])
    if validation:
        return sample
    vector[num_classes : num_classes + 2] += rng.normal(0.0, config.centre_noise, 2)
    crop = sample.crop
    if config.photometric:
        crop = jitter_hsv(rng, crop)
        if rng.random() < config.clahe_probability:
            crop = equalise(crop)
    sample = Sample(crop, vector, sample.target, sample.input_box)
    return flip_horizontally(sample, num_classes) if rng.random() < config.flip_probability else sample
