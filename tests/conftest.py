"""Shared fixtures: paths to ../shared data (tests that need it skip when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def coco_person() -> Path:
    root = SHARED_DATA / "coco-person"
    if not (root / "annotations" / "instances_person.json").is_file():
        pytest.skip("../shared/data/coco-person is not beside this checkout")
    return root


@pytest.fixture(scope="session")
def mot17_mini() -> Path:
    root = SHARED_DATA / "mot17-mini"
    if not (root / "annotations" / "gt_pedestrian.json").is_file():
        pytest.skip("../shared/data/mot17-mini is not beside this checkout")
    return root
