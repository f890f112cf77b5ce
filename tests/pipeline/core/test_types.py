"""Detections: made once from Ultralytics, indexed like arrays, each box's class by name; RefinedDetections' final boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.core.errors import UsageError
from pipeline.core.types import Detections, RefinedDetections, RefineStatus

NAMES = ("person", "bicycle", "car")


def detections() -> Detections:
    return Detections([[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]], [0.9, 0.5, 0.1], [0, 2, 1], NAMES)


def test_indexing_keeps_the_class_names_and_a_position_stays_a_list_of_one():
    every = detections()
    assert every.names == ("person", "car", "bicycle")
    masked = every[every.scores > 0.3]
    assert len(masked) == 2 and masked.names == ("person", "car") and masked.class_names == NAMES
    assert every[-1].boxes.shape == (1, 4) and every[-1].names == ("bicycle",)
    np.testing.assert_array_equal(every[1:].boxes, every.boxes[1:])
    np.testing.assert_array_equal(every[[2, 0]].class_ids, [1, 0])


def ultralytics_results(data: torch.Tensor):
    from pipeline.io.ultralytics_offline import import_ultralytics

    import_ultralytics(num_threads=1)
    from ultralytics.engine.results import Results

    return Results(np.zeros((48, 64, 3), np.uint8), path="frame.png", names=dict(enumerate(NAMES)), boxes=data)


def test_from_ultralytics_reads_results_and_their_boxes_alike():
    data = torch.tensor([[1.0, 2.0, 30.0, 40.0, 0.8, 2.0], [5.0, 6.0, 7.0, 8.0, 0.3, 0.0]])
    results = ultralytics_results(data)
    made = Detections.from_ultralytics(results)
    assert made.names == ("car", "person") and made.class_names == NAMES
    np.testing.assert_allclose(made.boxes, data[:, :4].numpy())
    np.testing.assert_allclose(made.scores, [0.8, 0.3], rtol=1e-6)
    from_boxes = Detections.from_ultralytics(results.boxes, NAMES)
    np.testing.assert_array_equal(from_boxes.boxes, made.boxes)
    with pytest.raises(UsageError, match="pass class_names"):
        Detections.from_ultralytics(results.boxes)


def test_refined_boxes_are_the_refined_box_where_refined_else_the_input():
    refined = np.full((3, 4), np.nan)
    refined[1] = [6, 6, 19, 29]
    objects = RefinedDetections(detections(), refined, (RefineStatus.GATED, RefineStatus.REFINED, RefineStatus.UNMAPPED),
                                np.full((3, 2), np.nan))  # fmt: skip
    assert len(objects) == 3 and objects.changed.tolist() == [False, True, False]
    np.testing.assert_array_equal(objects.boxes, [[0, 0, 10, 10], [6, 6, 19, 29], [1, 2, 3, 4]])
