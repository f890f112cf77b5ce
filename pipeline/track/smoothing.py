"""Box sides smoothed along a track, so a standing object's box holds still.

A refined box is decided frame by frame, so a standing person's box can shimmer by a pixel or
two. Each side of a tracked box goes through an alpha-beta filter (a steady-state constant-velocity
Kalman filter): `beta` 0 is a plain exponential moving average, which lags behind a moving object
by (1 - alpha) / alpha frames of its motion; `beta` > 0 also follows a velocity and so does not lag
behind steady motion. `snap` restarts a track's filter at the measured box when a side moved
further than that fraction of the box's size from where the filter expected it (a camera pan, a
person turning): smoothing is for shimmer, not for motion. benchmarks/tracking.py measures these
on standing and on moving objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import UsageError
from pipeline.core.types import NO_TRACK


@dataclass(frozen=True)
class SmoothingSettings:
    """alpha: weight of the new measurement (1: no smoothing); beta: weight of the velocity correction."""

    alpha: float = 0.5
    beta: float = 0.1
    max_gap: int = 5  # frames a track may go unseen before its filter starts over
    snap: float | None = None  # restart at the measurement when a side is off by more than this x box size

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1 or not 0 <= self.beta < 1:
            raise UsageError(f"smoothing needs 0 < alpha <= 1 and 0 <= beta < 1; got {self.alpha}, {self.beta}")
        if self.snap is not None and self.snap <= 0:
            raise UsageError(f"smoothing's snap must be positive; got {self.snap}")


@dataclass
class _SideState:
    sides: np.ndarray  # (4,) filtered x1, y1, x2, y2
    velocity: np.ndarray  # (4,) pixels per frame
    frame: int


class BoxSmoother:
    """Alpha-beta filter of the sides of each tracked box (one smoother per stream)."""

    def __init__(self, settings: SmoothingSettings | None = None) -> None:
        self.settings = settings or SmoothingSettings()
        self._states: dict[int, _SideState] = {}

    def smooth(self, frame_index: int, track_ids: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Smoothed copies of this frame's boxes; untracked or non-finite boxes pass as they are."""
        alpha, beta = self.settings.alpha, self.settings.beta
        out = np.array(boxes, dtype=np.float64, copy=True)
        for row, track in enumerate(np.asarray(track_ids).tolist()):
            measured = out[row]
            if track == NO_TRACK or not np.isfinite(measured).all():
                continue
            state = self._states.get(track)
            gap = 0 if state is None else frame_index - state.frame
            predicted = None if state is None or not 0 < gap <= self.settings.max_gap else state.sides + gap * state.velocity
            if state is None or predicted is None or self._snaps(measured - predicted, measured):
                self._states[track] = _SideState(measured.copy(), np.zeros(4), frame_index)
                continue
            residual = measured - predicted
            state.sides = predicted + alpha * residual
            state.velocity = state.velocity + beta / gap * residual
            state.frame = frame_index
            out[row] = state.sides
        self._forget_older_than(frame_index - self.settings.max_gap)
        return out

    def _snaps(self, residual: np.ndarray, measured: np.ndarray) -> bool:
        if self.settings.snap is None:
            return False
        size = np.tile(measured[2:] - measured[:2], 2)
        return bool(np.any(np.abs(residual) > self.settings.snap * size))

    def _forget_older_than(self, frame_index: int) -> None:
        for track in [track for track, state in self._states.items() if state.frame < frame_index]:
            del self._states[track]
