"""Reuse a refinement along a track while the detector's box holds still, instead of running the network.

A crowd pays the refiner on every box of every frame even where nothing moved. Here an object
whose detector box barely changed since its last fresh refinement (IoU with that box above
`min_iou`, centre moved at most `max_shift` of its size) takes that refinement again, as offsets
of the sides relative to the box and scaled by its size; after `max_age` frames a fresh one is due.

The decision must be made before cropping, i.e. before the tracker has seen the frame (it is fed
the refined boxes), so the planner follows each object by its own association: one to one, by
IoU, between this frame's boxes and the boxes seen in the previous frame, which at these IoU
levels is stricter than ByteTrack's; a box whose class changed is refined again. It runs in two
halves for a pipeline whose crop and refine stages are different threads: `plan` (crop stage:
which boxes go to the network) keeps the boxes and ages; `complete` (refine stage, same frame
order) keeps the outcomes. Neither reads the other's state, so the result does not depend on
thread timing.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

import numpy as np

from pipeline.core.errors import UsageError
from pipeline.core.geometry import box_iou_pairs, match_boxes
from pipeline.core.types import Detections, RefinedDetections, RefineStatus


@dataclass(frozen=True)
class ReuseSettings:
    """When a box counts as unchanged since its last fresh refinement, and for how many frames at most."""

    min_iou: float = 0.9  # IoU of this frame's box with the box that was refined must be above this
    max_shift: float = 0.05  # centre motion, as a fraction of that box's width (x) and height (y)
    max_age: int = 10  # frames after a fresh refinement that may reuse it

    def __post_init__(self) -> None:
        if not 0 < self.min_iou < 1 or self.max_shift < 0 or self.max_age < 0:
            raise UsageError("reuse needs 0 < min_iou < 1, max_shift >= 0 and max_age >= 0")


@dataclass(frozen=True)
class ReusePlan:
    """Per detection of one frame: whether it goes to the network, and which refinement it belongs to."""

    refine: np.ndarray  # (N,) bool: crop and refine this box (the `only` mask of FrameRefiner.prepare)
    entries: np.ndarray  # (N,) int64: the refinement this box makes (refine) or reuses (not refine)

    @property
    def reused(self) -> np.ndarray:
        return ~self.refine


@dataclass
class _Anchor:
    box: np.ndarray  # the detector box that was last refined fresh
    age: int  # frames since then
    last_box: np.ndarray  # the detector box of the previous frame, for the association
    class_id: int  # a box whose class changed is another refinement (another class, or unmapped)


@dataclass(frozen=True)
class _Outcome:
    offsets: np.ndarray | None  # (4,) side offsets / box size; None: the box was left as it was
    status: RefineStatus
    predicted_iou: np.ndarray  # (2,)
    score_factor: float  # output score / detector score


def side_offsets(boxes: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """Refined sides relative to the box: (refined - box) / (w, h, w, h)."""
    size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
    return (refined - boxes) / size


def apply_offsets(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The inverse of side_offsets on other boxes: the same refinement, scaled to their size."""
    return boxes + offsets * np.tile(boxes[:, 2:] - boxes[:, :2], 2)


class RefinementReuse:
    """Decides per frame which boxes need the network and fills in the others (one per stream)."""

    def __init__(self, settings: ReuseSettings | None = None) -> None:
        self.settings = settings or ReuseSettings()
        self._anchors: dict[int, _Anchor] = {}  # entries seen in the previous planned frame (crop stage)
        self._outcomes: dict[int, _Outcome] = {}  # refinements still referenced (refine stage)
        self._ids = count()
        self.boxes_reused = 0
        self.boxes_refined = 0

    def plan(self, detections: Detections) -> ReusePlan:
        """Which of this frame's detector boxes go to the network; the others reuse an earlier refinement."""
        boxes, class_ids = detections.boxes, detections.class_ids
        refine = np.ones(len(boxes), dtype=bool)
        entries = np.full(len(boxes), -1, dtype=np.int64)
        for row, entry in self._associate(boxes, class_ids):
            anchor = self._anchors[entry]
            entries[row] = entry
            refine[row] = anchor.age >= self.settings.max_age or not self._holds(anchor.box, boxes[row])
        anchors: dict[int, _Anchor] = {}
        for row in range(len(boxes)):
            if entries[row] < 0:
                entries[row] = next(self._ids)
            previous = self._anchors.get(int(entries[row]))
            if refine[row] or previous is None:
                anchors[int(entries[row])] = _Anchor(boxes[row].copy(), 0, boxes[row].copy(), int(class_ids[row]))
            else:
                anchors[int(entries[row])] = _Anchor(previous.box, previous.age + 1, boxes[row].copy(), previous.class_id)
        self._anchors = anchors
        return ReusePlan(refine, entries)

    def complete(self, plan: ReusePlan, result: RefinedDetections) -> RefinedDetections:
        """`result` of refining the planned boxes, with the reused ones filled in (status "reused")."""
        detections = result.detections
        refined = result.refined_boxes.copy()
        predicted = result.predicted_iou.copy()
        scores = result.scores.copy()
        status = list(result.status)
        outcomes: dict[int, _Outcome] = {}
        for row in np.flatnonzero(plan.refine):
            box = detections.boxes[row : row + 1]
            changed = not np.isnan(refined[row]).any()
            offsets = side_offsets(box, refined[row : row + 1])[0] if changed else None
            factor = float(scores[row] / detections.scores[row]) if detections.scores[row] > 0 else 1.0
            outcomes[int(plan.entries[row])] = _Outcome(offsets, status[row], predicted[row].copy(), factor)
        for row in np.flatnonzero(plan.reused):
            outcome = outcomes.get(int(plan.entries[row])) or self._outcomes[int(plan.entries[row])]
            outcomes[int(plan.entries[row])] = outcome
            if outcome.offsets is not None:
                refined[row] = apply_offsets(detections.boxes[row : row + 1], outcome.offsets[None])[0]
            status[row] = RefineStatus.REUSED if outcome.status == RefineStatus.REFINED else outcome.status
            predicted[row] = outcome.predicted_iou
            scores[row] = detections.scores[row] * outcome.score_factor
        self._outcomes = outcomes  # entries not in this frame are never planned again
        self.boxes_reused += int(plan.reused.sum())
        self.boxes_refined += int(plan.refine.sum())
        return RefinedDetections(detections, refined, tuple(status), predicted, scores)

    def _associate(self, boxes: np.ndarray, class_ids: np.ndarray) -> list[tuple[int, int]]:
        """(row, entry) pairs, one to one, greedily by IoU (above min_iou) with the previous frame's boxes of the same class."""
        entries = np.array(list(self._anchors), dtype=np.int64)
        previous = np.array([self._anchors[int(entry)].last_box for entry in entries]).reshape(-1, 4)
        previous_classes = np.array([self._anchors[int(entry)].class_id for entry in entries], dtype=np.int64)
        pairs = []
        for class_id in np.unique(class_ids):
            rows, columns = np.flatnonzero(class_ids == class_id), np.flatnonzero(previous_classes == class_id)
            if len(columns):
                with np.errstate(invalid="ignore"):  # NaN boxes match nothing
                    first, second, _ = match_boxes(boxes[rows], previous[columns], self.settings.min_iou)
                pairs += [(int(rows[i]), int(entries[columns[j]])) for i, j in zip(first, second, strict=True)]
        return pairs

    def _holds(self, anchor: np.ndarray, box: np.ndarray) -> bool:
        """The box still overlaps the refined one enough and its centre has barely moved."""
        with np.errstate(invalid="ignore"):
            iou = float(box_iou_pairs(anchor[None], box[None])[0])
        size = anchor[2:] - anchor[:2]
        shift = np.abs((box[:2] + box[2:]) / 2 - (anchor[:2] + anchor[2:]) / 2) / size
        return iou > self.settings.min_iou and bool(np.all(shift <= self.settings.max_shift))
