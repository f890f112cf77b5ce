"""Detector classes map onto refiner classes by name, with aliases; unknown classes map to -1."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.errors import ClassMappingError
from pipeline.refine.class_mapping import ClassMapping, canonical_name


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("Person", "person"),
        ("pedestrian", "person"),
        ("traffic_light", "traffic light"),
        ("Dining-Table", "dining table"),
        ("diningtable", "dining table"),
        ("TVMonitor", "tv"),
    ],
)
def test_names_are_normalised_and_aliased(name, canonical):
    assert canonical_name(name) == canonical


def test_mapping_by_name_ignores_case_and_order():
    mapping = ClassMapping.by_name(("car", "Pedestrian", "dog"), ("person", "car"))
    np.testing.assert_array_equal(mapping.to_refiner(np.array([0, 1, 2, 1])), [1, 0, -1, 0])
    assert mapping.describe() == {"car": "car", "Pedestrian": "person"}


def test_no_common_class_is_a_clear_error():
    with pytest.raises(ClassMappingError, match="--no-refine"):
        ClassMapping.by_name(("cat", "dog"), ("disc", "square"))


def test_custom_aliases():
    mapping = ClassMapping.by_name(("ball",), ("disc",), aliases={"ball": "disc"})
    np.testing.assert_array_equal(mapping.table, [0])


def test_table_is_validated():
    with pytest.raises(ValueError, match="one entry per detector class"):
        ClassMapping(("a", "b"), ("a",), np.array([0]))
    with pytest.raises(ValueError, match="-1 or a refiner class id"):
        ClassMapping(("a",), ("a",), np.array([3]))
