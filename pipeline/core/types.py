"""The values that travel through the pipeline: a frame, its detections, their refined boxes.

Each is checked once, when it is made (`__post_init__`), and trusted after: detections hold
float64 xyxy boxes (the precision every box computation uses), float32 scores and int64 class ids into their class names, so no later stage
converts or re-checks them. Pure numpy, like the rest of pipeline.core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from pipeline.core.errors import UsageError


@dataclass(frozen=True)
class Frame:
    """One decoded frame and where it came from.

    `name` identifies the frame in annotation files: the image's path for image folders and
    "<video file name>#<index>" for videos (the convention of pipeline.data.synthetic's COCO files).
    """

    index: int
    image: np.ndarray  # H x W x 3 uint8 BGR, as OpenCV decodes it
    timestamp: float | None  # seconds: media time for videos, wall clock for live; None for images or unknown fps
    name: str

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"frame index must be non-negative; got {self.index}")
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"frame image must be H x W x 3 uint8 BGR; got {self.image.dtype} {self.image.shape}")


@dataclass(frozen=True)
class Detections:
    """Boxes of one frame in the detector's own class space.

    boxes (N, 4) float64 x1, y1, x2, y2 in frame pixels; scores (N,) float32; class_ids (N,) int64
    indexing `class_names`. Boxes may be degenerate (NaN, empty, outside the frame): the refiner
    passes those through as "unusable" instead of stopping a stream on one odd box.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise UsageError(f"detection boxes must be (N, 4); got {boxes.shape}")
        if not len(boxes) == len(scores) == len(class_ids):
            raise UsageError(f"detections disagree in length: {len(boxes)} boxes, {len(scores)} scores, {len(class_ids)} classes")
        if not self.class_names:
            raise UsageError("detections need the detector's class names")
        if len(class_ids) and (class_ids.min() < 0 or class_ids.max() >= len(self.class_names)):
            raise UsageError(f"class ids must lie in 0..{len(self.class_names) - 1}; got {class_ids.min()}..{class_ids.max()}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)
        object.__setattr__(self, "class_names", tuple(self.class_names))

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Detections:
        """The detections at `index` (a position, slice, positions or boolean mask), with the same class names."""
        rows = [index] if isinstance(index, int | np.integer) else index
        return Detections(self.boxes[rows], self.scores[rows], self.class_ids[rows], self.class_names)

    @property
    def names(self) -> tuple[str, ...]:
        """Each detection's class name."""
        return tuple(self.class_names[class_id] for class_id in self.class_ids)

    @classmethod
    def empty(cls, class_names: tuple[str, ...]) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), class_names)

    @classmethod
    def from_ultralytics(cls, result: Any, class_names: Sequence[str] | None = None) -> Detections:
        """An Ultralytics `Results` (class names from `result.names`), or its `.boxes` with `class_names`.

        Duck-typed: the tensors are read with .cpu().numpy(), so core imports neither torch nor Ultralytics.
        """
        boxes = result.boxes if hasattr(result, "names") else result
        if boxes is None:
            raise UsageError("these Ultralytics Results hold no boxes; pass a detection model's results")
        if class_names is None:
            names = getattr(result, "names", None)
            if names is None:
                raise UsageError("Ultralytics boxes carry no class names; pass class_names (the model's names)")
            class_names = [names[index] for index in range(len(names))] if isinstance(names, dict) else list(names)
        return cls(_numpy(boxes.xyxy), _numpy(boxes.conf), _numpy(boxes.cls).astype(np.int64), tuple(class_names))


class RefineStatus(StrEnum):
    """Why an output box is what it is (written per object to detections.jsonl)."""

    REFINED = "refined"  # the refiner's box replaced the detector's
    GATED = "gated"  # refined, but the quality gate kept the detector's box
    REUSED = "reused"  # the refinement of an earlier frame, carried along a box that barely moved (--track)
    INVALID = "invalid"  # the refiner returned NaN or infinity for this box: the detector's box stands (a run warns)
    UNMAPPED = "unmapped"  # the refiner does not know the detector's class
    UNUSABLE = "unusable"  # degenerate box (NaN, empty, outside the frame)
    SMALL = "small"  # below --min-size
    DISABLED = "disabled"  # --no-refine
    SKIPPED_GAIN = "skipped_gain"  # not cropped: the calibration profile's gate expects no gain from refining it
    SKIPPED_BUDGET = "skipped_budget"  # not cropped: beyond the frame's --max-refine boxes with the highest expected gain


@dataclass(frozen=True)
class RefinedDetections:
    """Detections plus, per object, the refined box (NaN row where not used), status, predicted IoUs
    and the output score (the detector's, unless the refiner's calibration rescores by predicted IoU).

    What Refiner.refine returns and every sink writes: `boxes` (the box to use), `status` (why),
    `predicted_iou` (NaN rows where not predicted: boxes not refined, or a model without an IoU head).
    """

    detections: Detections
    refined_boxes: np.ndarray  # (N, 4) float64 frame pixels; NaN where the detector's box stands
    status: tuple[RefineStatus, ...]
    predicted_iou: np.ndarray  # (N, 2) IoU of input box, of refined box; NaN where not predicted
    scores: np.ndarray | None = None  # (N,) output scores; None: the detector's
    tracks: Tracks | None = None  # with tracking (Refiner(track=...)): ids and the boxes along each track

    def __post_init__(self) -> None:
        count = len(self.detections)
        if self.refined_boxes.shape != (count, 4) or self.predicted_iou.shape != (count, 2) or len(self.status) != count:
            raise ValueError(f"refinement results must have one row per detection ({count})")
        if self.scores is None:
            object.__setattr__(self, "scores", self.detections.scores)
        elif self.scores.shape != (count,):
            raise ValueError(f"refinement results must have one score per detection ({count})")

    @classmethod
    def untouched(cls, detections: Detections, status: RefineStatus) -> RefinedDetections:
        count = len(detections)
        return cls(detections, np.full((count, 4), np.nan), (status,) * count, np.full((count, 2), np.nan))

    def __len__(self) -> int:
        return len(self.detections)

    @property
    def changed(self) -> np.ndarray:
        """Mask of objects whose box the refiner changed (status "refined")."""
        return ~np.isnan(self.refined_boxes).any(axis=1)

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) float64 xyxy, the box to use for each object: refined where refined, else the detector's, in input order."""
        return np.where(self.changed[:, None], self.refined_boxes, self.detections.boxes)

    @property
    def track_ids(self) -> np.ndarray | None:
        """(N,) int64 track id per object (NO_TRACK where none yet) with tracking on, else None."""
        return None if self.tracks is None else self.tracks.ids


@dataclass(frozen=True)
class Tracks:
    """--track, per object of one frame: its track id (NO_TRACK where none yet) and the box to show along
    the track (the output box, smoothed where smoothing is on)."""

    ids: np.ndarray  # (N,) int64
    boxes: np.ndarray  # (N, 4) float64
    smoothed: bool


NO_TRACK = -1  # a box the tracker has not (yet) confirmed as a track: a new object's first frames, clutter


@dataclass(frozen=True)
class FrameResult:
    """A frame, its refined detections, the stream it came from (and, with --track, their tracks): what every sink consumes."""

    frame: Frame
    objects: RefinedDetections
    stream: int = 0  # the source's position in the run's sources (0 for a run of one stream)
    tracks: Tracks | None = None


def _numpy(values: Any) -> np.ndarray:
    """A torch tensor (on any device) or an array-like as a numpy array."""
    return values.cpu().numpy() if hasattr(values, "cpu") else np.asarray(values)
