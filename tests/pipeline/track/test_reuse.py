"""Refinement reuse on constructed boxes: which boxes go to the network, offsets scaled to the box, max age."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.types import Detections, RefinedDetections, RefineStatus
from pipeline.track.reuse import RefinementReuse, ReuseSettings, apply_offsets, side_offsets

NAMES = ("person", "dog")
BOX = np.array([100.0, 100.0, 200.0, 300.0])
REFINED = np.array([104.0, 96.0, 198.0, 310.0])


def frame_result(detections: Detections, refined: np.ndarray, plan_refine: np.ndarray) -> RefinedDetections:
    """What FrameRefiner returns for the planned boxes: `refined` rows where planned (NaN: gated), NaN elsewhere."""
    count = len(detections)
    refined_boxes = np.where(plan_refine[:, None], refined, np.nan)
    status = tuple(RefineStatus.REFINED if not np.isnan(row).any() else RefineStatus.GATED for row in refined_boxes)
    return RefinedDetections(detections, refined_boxes, status, np.full((count, 2), 0.7))


def step(
    reuse: RefinementReuse, boxes: np.ndarray, refined: np.ndarray, class_ids: list[int] | None = None
) -> tuple[np.ndarray, RefinedDetections]:
    detections = Detections(boxes, np.full(len(boxes), 0.8), class_ids or [0] * len(boxes), NAMES)
    plan = reuse.plan(detections)
    return plan.refine, reuse.complete(plan, frame_result(detections, refined, plan.refine))


def test_offsets_are_relative_to_the_box_and_scale_with_it():
    offsets = side_offsets(BOX[None], REFINED[None])
    np.testing.assert_allclose(offsets, [[0.04, -0.02, -0.02, 0.05]])
    doubled = np.array([[0.0, 0.0, 200.0, 400.0]])
    np.testing.assert_allclose(apply_offsets(doubled, offsets), [[8.0, -8.0, 196.0, 420.0]])


def test_a_box_that_held_still_reuses_its_refinement_scaled_to_its_size():
    reuse = RefinementReuse()
    refine, first = step(reuse, BOX[None], REFINED[None])
    assert refine.tolist() == [True] and first.status == (RefineStatus.REFINED,)
    moved = BOX + np.array([1.0, 1.0, 2.0, 1.0])  # IoU 0.98, centre moved 1.5 % of the width
    refine, second = step(reuse, moved[None], np.full((1, 4), 999.0))  # the network's answer must not be used
    assert refine.tolist() == [False] and second.status == (RefineStatus.REUSED,)
    np.testing.assert_allclose(second.refined_boxes[0], apply_offsets(moved[None], side_offsets(BOX[None], REFINED[None]))[0])
    np.testing.assert_allclose(second.predicted_iou[0], [0.7, 0.7])
    assert reuse.boxes_reused == 1 and reuse.boxes_refined == 1


def test_a_box_that_moved_goes_to_the_network_again():
    reuse = RefinementReuse(ReuseSettings(min_iou=0.9, max_shift=0.05))
    step(reuse, BOX[None], REFINED[None])
    shifted = BOX + np.array([8.0, 0.0, 8.0, 0.0])  # IoU 0.85
    refine, result = step(reuse, shifted[None], (REFINED + 8)[None])
    assert refine.tolist() == [True] and result.status == (RefineStatus.REFINED,)
    np.testing.assert_allclose(result.refined_boxes[0], REFINED + 8)


def test_max_age_forces_a_fresh_refinement():
    reuse = RefinementReuse(ReuseSettings(max_age=2))
    decisions = [step(reuse, BOX[None], REFINED[None])[0][0] for _ in range(7)]
    assert decisions == [True, False, False, True, False, False, True]


def test_drift_is_measured_from_the_refined_box_not_the_previous_frame():
    reuse = RefinementReuse(ReuseSettings(min_iou=0.9, max_shift=0.05, max_age=100))
    decisions = [step(reuse, (BOX + [3.0 * k, 0, 3.0 * k, 0])[None], REFINED[None])[0][0] for k in range(6)]
    assert decisions[:2] == [True, False] and True in decisions[2:]  # 3 px a frame: fresh once the sum is too far


def test_a_gated_refinement_is_reused_as_gated():
    reuse = RefinementReuse()
    step(reuse, BOX[None], np.full((1, 4), np.nan))
    refine, result = step(reuse, BOX[None], REFINED[None])
    assert refine.tolist() == [False] and result.status == (RefineStatus.GATED,) and np.isnan(result.refined_boxes).all()


def test_each_refinement_is_reused_by_one_box_at_most_and_new_boxes_are_refined():
    reuse = RefinementReuse()
    step(reuse, BOX[None], REFINED[None])
    boxes = np.stack([BOX + 1, BOX, BOX + 400])  # two candidates for one refinement, and a new object
    refine, result = step(reuse, boxes, np.stack([REFINED + 1, REFINED, REFINED + 400]))
    assert refine.tolist() == [True, False, True]
    np.testing.assert_allclose(result.refined_boxes[1], REFINED)
    np.testing.assert_allclose(result.refined_boxes[2], REFINED + 400)


def test_a_box_whose_class_changed_is_refined_again():
    reuse = RefinementReuse()
    step(reuse, BOX[None], REFINED[None], [0])
    refine, result = step(reuse, BOX[None], (REFINED + 1)[None], [1])
    assert refine.tolist() == [True]
    np.testing.assert_allclose(result.refined_boxes[0], REFINED + 1)


def test_bad_settings_are_a_usage_error():
    from pipeline.core.errors import UsageError

    with pytest.raises(UsageError):
        ReuseSettings(min_iou=0.0)
