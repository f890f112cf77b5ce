"""Shared fixtures: paths to ../shared data (tests that need it skip when it is absent)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
import torch

from pipeline.model.defaults import DEMO_VIDEO

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


@pytest.fixture
def private_engine_dirs(tmp_path, monkeypatch) -> Path:
    """Keep the ONNX export cache, the engine lookup and the runtimes' caches (OpenVINO's compiled models,
    auto's timing: writable_root() / engines / cache) out of the checkout; returns the folder used instead."""
    from pipeline.model import defaults, export

    monkeypatch.setattr(export, "ONNX_CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(defaults, "ENGINES_DIR", tmp_path / "engines")
    monkeypatch.setattr(defaults, "writable_root", lambda: tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Two cores shared with other test processes: one intra-op thread avoids OpenMP spin contention."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data with the multi-class coco-tiny set (real COCO photos)."""
    if not (SHARED_DATA / "coco-tiny" / "annotations" / "instances.json").is_file():
        pytest.skip("../shared/data/coco-tiny is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def openvino_detector(tmp_path_factory) -> Path:
    """The committed .pt exported to OpenVINO in a temporary folder (20-60 s; the export is not committed)."""
    pytest.importorskip("openvino")
    import shutil

    from pipeline.io.detectors import export_openvino
    from pipeline.model.defaults import DETECTOR_PT, MODELS_DIR

    folder = tmp_path_factory.mktemp("openvino")
    return export_openvino(Path(shutil.copy(MODELS_DIR / DETECTOR_PT, folder)))


@pytest.fixture(scope="session")
def demo_clip() -> Callable[[Path, int, int], Path]:
    """Writes `count` frames of the bundled real clip from frame `start` to a new .mp4 (a short real video)."""

    def cut(path: Path, start: int, count: int) -> Path:
        capture = cv2.VideoCapture(str(DEMO_VIDEO))
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        writer = None
        for _ in range(count):
            ok, image = capture.read()
            assert ok
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, image.shape[1::-1])
            writer.write(image)
        writer.release()
        capture.release()
        return path

    return cut
