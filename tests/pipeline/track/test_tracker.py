"""Track ids from Ultralytics' ByteTrack: stable along a generated clip, per stream, none for unusable boxes."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from pipeline.data.synthetic import generate_tracked_clip
from pipeline.core.types import NO_TRACK
from pipeline.track.tracker import Tracker, TrackerSettings


def clip_boxes(seed: int, frames: int = 30) -> list[tuple[np.ndarray, np.ndarray]]:
    """(boxes moved by up to 2 px per side, object ids) per frame of a clip with standing, slow and moving objects."""
    rng = np.random.default_rng(seed)
    return [(scene.boxes + rng.uniform(-2, 2, scene.boxes.shape), ids)
            for scene, ids in generate_tracked_clip(frames, 640, 480, seed, n_objects=8, standing=0.3, slow=0.3)]


def track(tracker: Tracker, boxes: np.ndarray) -> np.ndarray:
    return tracker.update(boxes, np.full(len(boxes), 0.9), np.zeros(len(boxes), np.int64))


def test_every_object_keeps_one_id_along_a_clip_and_objects_do_not_share_ids():
    tracker = Tracker()
    ids_of_object = defaultdict(set)
    for boxes, objects in clip_boxes(seed=3):
        ids = track(tracker, boxes)
        assert (ids != NO_TRACK).all()
        for obj, track_id in zip(objects.tolist(), ids.tolist(), strict=True):
            ids_of_object[obj].add(track_id)
    assert all(len(ids) == 1 for ids in ids_of_object.values())
    assert len({next(iter(ids)) for ids in ids_of_object.values()}) == len(ids_of_object) == tracker.track_count


def test_streams_have_their_own_ids_whatever_the_other_streams_do():
    first, second = clip_boxes(seed=1, frames=10), clip_boxes(seed=2, frames=10)
    alone = Tracker()
    expected = [track(alone, boxes) for boxes, _ in first]
    interleaved, other = Tracker(), Tracker()
    for (boxes, _), (other_boxes, _), ids in zip(first, second, expected, strict=True):
        track(other, other_boxes)
        np.testing.assert_array_equal(track(interleaved, boxes), ids)


def test_unusable_boxes_get_no_track_and_the_rest_keep_their_rows():
    tracker = Tracker()
    boxes = np.array([[10, 10, 50, 60], [np.nan, 0, 5, 5], [100, 100, 150, 170]], dtype=np.float64)
    for _ in range(3):
        ids = track(tracker, boxes)
    assert ids[1] == NO_TRACK and ids[0] != ids[2] and (ids[[0, 2]] != NO_TRACK).all()


def test_low_scores_never_start_a_track():
    tracker = Tracker(TrackerSettings(high_score=0.5, new_track_score=0.5))
    ids = tracker.update(np.array([[10.0, 10, 50, 60]]), np.array([0.3]), np.zeros(1, np.int64))
    assert ids.tolist() == [NO_TRACK] and tracker.track_count == 0


def test_bad_thresholds_are_a_usage_error():
    from pipeline.core.errors import UsageError

    with pytest.raises(UsageError):
        TrackerSettings(low_score=0.5, high_score=0.2)
