"""Everything `--track` keeps for one stream: the tracker, the side smoother and the refinement reuse.

One `StreamTracks` per stream, so track ids are never shared across streams. The order of a frame:
`plan` (before cropping: which boxes go to the network), refine, then `finish` (reused boxes
filled in, ids from the boxes the pipeline outputs, sides smoothed along each track).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pipeline.core.types import Detections, Frame, FrameResult, RefinedDetections, Tracks
from pipeline.track.reuse import RefinementReuse, ReusePlan, ReuseSettings
from pipeline.track.smoothing import BoxSmoother, SmoothingSettings
from pipeline.track.tracker import Tracker, TrackerSettings

if TYPE_CHECKING:  # pipeline.refine imports this module (the Refiner's `track` option)
    from pipeline.refine.refiner import FrameRefiner

# What `--track --smooth` and `--track --reuse` use (benchmarks/results/cpu-2core/tracking.md).
ADOPTED_SMOOTHING = SmoothingSettings(alpha=0.5, beta=0.1, snap=0.05)
ADOPTED_REUSE = ReuseSettings()


@dataclass(frozen=True)
class TrackOptions:
    """What --track does besides ids: smoothing (None: off) and reuse (None: off)."""

    tracker: TrackerSettings = TrackerSettings()
    smoothing: SmoothingSettings | None = None
    reuse: ReuseSettings | None = None

    @classmethod
    def of(cls, smooth: bool, reuse: bool) -> TrackOptions:
        """The options of the run flags: ids always, smoothing and reuse as measured and adopted."""
        return cls(smoothing=ADOPTED_SMOOTHING if smooth else None, reuse=ADOPTED_REUSE if reuse else None)


class StreamTracks:
    """Tracker, smoother and reuse of one stream; `plan` and `finish` are called in frame order."""

    def __init__(self, options: TrackOptions | None = None) -> None:
        self.options = options or TrackOptions()
        self.tracker = Tracker(self.options.tracker)
        self.smoother = BoxSmoother(self.options.smoothing) if self.options.smoothing else None
        self.reuse = RefinementReuse(self.options.reuse) if self.options.reuse else None

    def plan(self, detections: Detections) -> ReusePlan | None:
        """Which boxes to crop (the `only` mask of FrameRefiner.prepare); None: all of them."""
        return self.reuse.plan(detections) if self.reuse else None

    def finish(self, frame_index: int, plan: ReusePlan | None, result: RefinedDetections) -> tuple[RefinedDetections, Tracks]:
        """The result with reused refinements filled in, and the frame's tracks."""
        if plan is not None and self.reuse is not None:
            result = self.reuse.complete(plan, result)
        boxes = result.boxes
        ids = self.tracker.update(boxes, result.scores, result.detections.class_ids)
        if self.smoother is not None:
            boxes = self.smoother.smooth(frame_index, ids, boxes)
        return result, Tracks(ids, boxes, self.smoother is not None)

    def refine(self, refiner: FrameRefiner, frame: Frame, detections: Detections) -> tuple[RefinedDetections, Tracks]:
        """One frame through plan, crop, network and finish in the caller's thread (the Python API)."""
        plan = self.plan(detections)
        job = refiner.prepare(frame, detections, only=None if plan is None else plan.refine)
        return self.finish(frame.index, plan, refiner.finish(job))

    def follow(self, result: FrameResult, plan: ReusePlan | None = None) -> FrameResult:
        """`result` (refined by `plan`'s mask, or not refined at all) with reused boxes filled in and its tracks."""
        objects, tracks = self.finish(result.frame.index, plan, result.objects)
        return replace(result, objects=objects, tracks=tracks)

    def summary(self) -> dict[str, int | None]:
        reuse = self.reuse
        return {
            "tracks": self.tracker.track_count,
            "boxes_reused": reuse.boxes_reused if reuse else None,
            "boxes_refined": reuse.boxes_refined if reuse else None,
        }

