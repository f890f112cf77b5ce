"""The gate before the network: which boxes are worth cropping and refining at all, and a per-frame budget.

Why before cropping: behind a precise detector most refined boxes move a pixel for no AP, yet each
costs a crop and a slot in the network's batch (a crowd of 20+ people halved the CPU frame rate).
What is known before cropping (box size, detector score, class, aspect, boxes in the frame, and
the detector via its calibration profile) predicts a box's IoU gain well enough to skip the boxes
that do not pay. The model (pipeline.core.calibration.GateModel) is a least-squares fit on real
per-box gains, made by `python -m benchmarks calibrate` and stored in the model file's profile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipeline.core.calibration import GateModel
from pipeline.core.geometry import longer_sides

SIDE_EDGES = (0.0, 32.0, 64.0, 96.0, 128.0, 192.0, 256.0, 384.0, math.inf)  # px; the longer side's bins
SLOPE_RIDGE = 1.0  # keeps slopes and class offsets finite where a feature barely varies (one class, one box per frame)


def gate_features(boxes: np.ndarray, scores: np.ndarray, frame_size: tuple[int, int] | np.ndarray,
                  boxes_in_frame: int | np.ndarray) -> np.ndarray:
    """(N, len(pipeline.core.calibration.GATE_FEATURES)) features of xyxy boxes; `frame_size` (width,
    height) of their one frame, or (N, 2) one per box (calibration pools many frames), as `boxes_in_frame`."""
    width = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
    height = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    frame_width, frame_height = np.asarray(frame_size, dtype=np.float64).T
    count = np.broadcast_to(np.maximum(np.asarray(boxes_in_frame, dtype=np.float64), 1.0), (len(boxes),))
    return np.stack([np.asarray(scores, dtype=np.float64), np.log2(width * height / (frame_width * frame_height)),
                     np.log2(width / height), np.log2(count)], axis=1)


def side_bins(edges: Sequence[float], sides: np.ndarray) -> np.ndarray:
    """Index of each longer side's bin ([edges[i], edges[i + 1]); beyond the ends: the end bins)."""
    return np.clip(np.searchsorted(np.asarray(edges), sides, side="right") - 1, 0, len(edges) - 2)


def expected_gain(gate: GateModel, sides: np.ndarray, features: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Expected IoU gain of refining each box (longer side px, gate_features rows, refiner class name)."""
    offsets = dict(gate.class_gain)
    gain = np.asarray(gate.side_gain)[side_bins(gate.side_edges, sides)]
    gain = gain + (features - np.asarray(gate.centres)) @ np.asarray(gate.slopes)
    return gain + np.array([offsets.get(name, 0.0) for name in class_names])


def fit_gate(sides: np.ndarray, features: np.ndarray, class_names: Sequence[str], gains: np.ndarray,
             edges: Sequence[float] = SIDE_EDGES, ridge: float = SLOPE_RIDGE) -> GateModel:
    """Least-squares fit of per-box gains: a gain per side bin plus slopes on the centred features and
    class offsets (both ridge-damped, so one class or a constant feature adds nothing). A bin no box
    fell into takes the gain of the nearest bin that had boxes. The threshold is left open (-inf):
    calibration chooses it by AP, not by IoU."""
    if not len(gains):
        raise ValueError("a gate needs calibration boxes to fit")
    bins = side_bins(edges, sides)
    used = np.unique(bins)
    centres = features.mean(axis=0)
    classes = sorted(set(class_names))
    class_index = {name: i for i, name in enumerate(classes)}
    one_hot_bins = (bins[:, None] == used[None, :]).astype(np.float64)
    one_hot_classes = np.zeros((len(gains), len(classes)))
    one_hot_classes[np.arange(len(gains)), [class_index[name] for name in class_names]] = 1.0
    design = np.concatenate([one_hot_bins, features - centres, one_hot_classes], axis=1)
    damped = np.concatenate([np.zeros(len(used)), np.full(features.shape[1] + len(classes), math.sqrt(ridge))])
    solution = np.linalg.lstsq(np.concatenate([design, np.diag(damped)]),
                               np.concatenate([np.asarray(gains, dtype=np.float64), np.zeros(len(damped))]), rcond=None)[0]
    used_gain = solution[:len(used)]
    nearest = np.abs(np.arange(len(edges) - 1)[:, None] - used[None, :]).argmin(axis=1)
    slopes = solution[len(used):len(used) + features.shape[1]]
    offsets = solution[len(used) + features.shape[1]:]
    return GateModel(tuple(edges), tuple(used_gain[nearest]), tuple(slopes), tuple(centres),
                     tuple(zip(classes, offsets.tolist())), -math.inf, len(gains))


def gate_decision(expected: np.ndarray, threshold: float, max_refine: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Masks over the boxes: skipped because not expected to pay (gain <= threshold), and skipped by the
    budget (paying, but beyond the `max_refine` with the highest expected gain; ties keep the earlier box)."""
    pays = expected > threshold
    over_budget = np.zeros(len(expected), dtype=bool)
    if max_refine is not None and pays.sum() > max_refine:
        paying = np.flatnonzero(pays)
        ranked = paying[np.argsort(-expected[paying], kind="stable")]
        over_budget[ranked[max_refine:]] = True
    return ~pays, over_budget


def box_gain_inputs(boxes: np.ndarray, scores: np.ndarray, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Longer sides and gate features of the boxes a frame offers the refiner (all of them count as its crowd)."""
    return longer_sides(boxes), gate_features(boxes, scores, frame_size, len(boxes))

