"""Track ids for the boxes of one stream: Ultralytics' ByteTrack, fed with the boxes the pipeline outputs.

Why Ultralytics' BYTETracker rather than writing one (or supervision's ByteTrack): Ultralytics is
already a core dependency (supervision is an optional extra), its ids are counted per tracker
object (so one tracker per stream never shares an id with another stream), and it returns, per
track, the index of the detection it matched, so an id is attached to our own box (refined or
not) instead of to the tracker's Kalman-filtered copy of it. benchmarks/tracking.py measures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from pipeline.core.errors import UsageError
from pipeline.core.types import NO_TRACK


@dataclass(frozen=True)
class TrackerSettings:
    """ByteTrack's thresholds (Ultralytics' bytetrack.yaml defaults); `track_buffer` in frames."""

    high_score: float = 0.25  # first association stage; a new track needs this score too
    low_score: float = 0.1  # second stage: low-score boxes only continue tracks
    new_track_score: float = 0.25
    track_buffer: int = 30  # frames a lost track waits for its object to come back
    match_threshold: float = 0.8  # association cost (1 - IoU, fused with score) at most this
    fuse_score: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.low_score <= self.high_score <= 1 or not 0 <= self.new_track_score <= 1:
            raise UsageError("tracker scores must satisfy 0 <= low <= high <= 1")
        if self.track_buffer < 0:
            raise UsageError(f"track buffer must be non-negative frames; got {self.track_buffer}")


class Tracker:
    """Track ids for one stream's boxes, frame after frame; make one per stream."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        from ultralytics.trackers.byte_tracker import BYTETracker  # lazy: only --track pays for the import

        self.settings = settings or TrackerSettings()
        args = SimpleNamespace(
            track_high_thresh=self.settings.high_score, track_low_thresh=self.settings.low_score,
            new_track_thresh=self.settings.new_track_score, track_buffer=self.settings.track_buffer,
            match_thresh=self.settings.match_threshold, fuse_score=self.settings.fuse_score,
        )
        self._tracker = BYTETracker(args)
        self.ids_issued: set[int] = set()

    @property
    def track_count(self) -> int:
        """Distinct track ids this tracker has reported so far."""
        return len(self.ids_issued)

    def update(self, boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
        """Track ids (N,) int64 for this frame's boxes, in their order; NO_TRACK where none."""
        from ultralytics.engine.results import Boxes

        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        ids = np.full(len(boxes), NO_TRACK, dtype=np.int64)
        finite = np.isfinite(boxes).all(axis=1)
        rows = np.flatnonzero(finite)
        data = np.column_stack([boxes[rows], np.asarray(scores, np.float32)[rows], np.asarray(class_ids, np.float32)[rows]])
        # orig_shape only matters for normalised coordinates, which are not used.
        tracks = self._tracker.update(Boxes(data.reshape(-1, 6), orig_shape=(1, 1)))
        if len(tracks):
            matched = rows[tracks[:, 7].astype(np.int64)]
            ids[matched] = tracks[:, 4].astype(np.int64)
            self.ids_issued.update(ids[matched].tolist())
        return ids
