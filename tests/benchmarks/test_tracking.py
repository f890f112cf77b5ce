"""The tracking benchmark's scores on hand-made tracks: MOT metrics, jitter of standing boxes, AP; its generated sequences."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.tracking_data import ClipSettings, synthetic_sequence
from benchmarks.tracking_metrics import OutputFrame, TruthFrame, coco_scores, mot_scores, standing_jitter
from pipeline.core.types import NO_TRACK

STILL = np.array([10.0, 10.0, 50.0, 90.0])
MOVING = np.array([200.0, 20.0, 240.0, 100.0])


def truth_frames(count: int = 6) -> list[TruthFrame]:
    return [TruthFrame(np.stack([STILL, MOVING + [5 * k, 0, 5 * k, 0]]), np.array([1, 2]), np.zeros(2, np.int64),
                       np.array([True, False])) for k in range(count)]  # fmt: skip


def outputs(truth: list[TruthFrame], ids: list[list[int]], still_shift: float = 0.0) -> list[OutputFrame]:
    frames = []
    for k, (frame, frame_ids) in enumerate(zip(truth, ids, strict=True)):
        boxes = frame.boxes.copy()
        boxes[0] += still_shift * (k % 2)  # the standing object's box moves back and forth
        frames.append(OutputFrame(boxes, np.full(2, 0.9), frame.class_ids, np.array(frame_ids)))
    return frames


def test_perfect_tracks_score_one_and_swapped_ids_count_switches():
    truth = truth_frames()
    perfect = mot_scores({"clip": (truth, outputs(truth, [[7, 8]] * 6))})["clip"]
    assert perfect["mota"] == pytest.approx(1.0) and perfect["idf1"] == pytest.approx(1.0) and perfect["num_switches"] == 0
    swapped = mot_scores({"clip": (truth, outputs(truth, [[7, 8]] * 3 + [[9, 7]] * 3))})["clip"]
    assert swapped["num_switches"] == 2 and swapped["idf1"] < 1.0
    untracked = mot_scores({"clip": (truth, outputs(truth, [[NO_TRACK, 8]] * 6))})["clip"]
    assert untracked["num_misses"] == 6 and untracked["mota"] == pytest.approx(0.5)


def test_jitter_is_measured_on_standing_objects_only():
    truth = truth_frames()
    assert standing_jitter(truth, outputs(truth, [[7, 8]] * 6)) == [0.0] * 5
    assert standing_jitter(truth, outputs(truth, [[7, 8]] * 6, still_shift=2.0)) == [2.0] * 5  # MOVING's motion is not jitter


def test_exact_boxes_score_ap_one_on_all_and_on_moving_objects():
    truth = truth_frames()
    assert coco_scores(truth, outputs(truth, [[7, 8]] * 6), ("thing",)) == {"AP": pytest.approx(1.0), "AP_moving": pytest.approx(1.0)}


def test_generated_sequences_mark_standing_objects_and_jitter_their_boxes():
    sequence = synthetic_sequence(0, ClipSettings(frames=5, size=(320, 240), objects=6, standing=0.5, slow=0.0))
    assert len(sequence.images) == len(sequence.detections) == len(sequence.truth) == 5
    standing = sequence.truth[0].standing
    assert standing.sum() == 3 and all((frame.standing == standing).all() for frame in sequence.truth)
    still = [frame.boxes[frame.standing] for frame in sequence.truth]
    assert all(np.array_equal(boxes, still[0]) for boxes in still)
    assert not np.array_equal(sequence.detections[0].boxes, sequence.detections[1].boxes[: len(sequence.detections[0])])


def test_ping_pong_plays_real_consecutive_frames_forward_and_back():
    from benchmarks.tracking_data import ping_pong

    assert ping_pong(3, 8) == [0, 1, 2, 1, 0, 1, 2, 1]
    assert ping_pong(4, 3) == [0, 1, 2] and ping_pong(1, 3) == [0, 0, 0]
