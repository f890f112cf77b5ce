"""Sources: video files, image folders, live targets and clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.core.errors import SourceError
from pipeline.core.types import Frame
from pipeline.io.sources import CaptureSource, ImageFolderSource, open_source


def write_video(path: Path, frames: int = 6, size: tuple[int, int] = (64, 48), fps: float = 10.0) -> Path:
    """An mp4v clip whose frame i is a flat grey of level 20 * i, so frames are identifiable after decoding."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for index in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 * index, np.uint8))
    writer.release()
    return path


def test_video_file_yields_every_frame_in_order(tmp_path):
    source = open_source(str(write_video(tmp_path / "clip.mp4")))
    assert isinstance(source, CaptureSource) and not source.live
    assert source.fps == pytest.approx(10.0) and source.frame_count == 6
    frames = list(source)
    assert [f.index for f in frames] == list(range(6))
    assert [f.name for f in frames] == [f"clip.mp4#{i}" for i in range(6)]
    assert frames[3].timestamp == pytest.approx(0.3)
    levels = [int(np.median(f.image)) for f in frames]
    assert all(abs(level - 20 * i) <= 6 for i, level in enumerate(levels))  # mp4v is lossy


def test_a_capture_is_read_once(tmp_path):
    source = open_source(str(write_video(tmp_path / "clip.mp4", frames=2)))
    list(source)
    with pytest.raises(SourceError, match="only once"):
        list(source)


def test_image_folder_is_read_in_name_order_and_skips_other_files(tmp_path):
    for name, level in [("b.png", 2), ("a.jpg", 1), ("c.bmp", 3)]:
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), level * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(str(tmp_path))
    assert isinstance(source, ImageFolderSource) and source.frame_count == 3 and not source.live
    frames = list(source)
    assert [Path(f.name).name for f in frames] == ["a.jpg", "b.png", "c.bmp"]
    assert frames[0].timestamp is None


def test_undecodable_images_are_skipped_counted_and_named(tmp_path):
    for index in range(5):
        cv2.imwrite(str(tmp_path / f"{index:06d}.jpg"), np.full((8, 8, 3), 40 * index, np.uint8))
    (tmp_path / "000001.jpg").write_bytes(b"")  # empty
    (tmp_path / "000003.jpg").write_bytes(np.random.default_rng(0).bytes(5000))  # random bytes
    (tmp_path / "sub.jpg").mkdir()  # a folder named like an image is not an image
    source = open_source(str(tmp_path))
    assert source.frame_count == 5
    frames = list(source)
    assert [Path(f.name).name for f in frames] == ["000000.jpg", "000002.jpg", "000004.jpg"]
    assert [f.index for f in frames] == [0, 1, 2]
    assert source.frames_unreadable == 2
    (warning,) = source.warnings(len(frames))
    assert "skipped 2 image(s)" in warning and "000001.jpg" in warning and "000003.jpg" in warning


def test_a_folder_of_only_undecodable_images_yields_nothing(tmp_path):
    (tmp_path / "000001.jpg").write_bytes(b"not a jpeg")
    source = open_source(str(tmp_path))
    assert list(source) == [] and source.frames_unreadable == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("no/such/file.mp4", "is not a video file, image folder"),
        ("99", "cannot open camera 99"),
    ],
)
def test_bad_sources_raise_a_clear_error(text, message):
    with pytest.raises(SourceError, match=message):
        open_source(text)


def test_empty_folder_and_non_video_file_are_refused(tmp_path):
    with pytest.raises(SourceError, match="holds no images"):
        open_source(str(tmp_path))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 100)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(junk))


def test_empty_video_and_refused_url_are_refused_at_once(tmp_path):
    empty = tmp_path / "empty.mp4"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48)).release()  # no frames
    with pytest.raises(SourceError, match="cannot open .*empty.mp4"):
        open_source(str(empty))
    for url in ("http://127.0.0.1:9/stream.mjpg", "rtsp://127.0.0.1:9/stream"):  # port 9 (discard): closed here
        with pytest.raises(SourceError, match="check the URL and that the stream is reachable"):
            open_source(url)


def test_urls_are_live(monkeypatch):
    opened = []

    class FakeCapture:  # test double: no network in tests
        def __init__(self, target):
            opened.append(target)

        def isOpened(self):
            return True

        def get(self, prop):
            return 0.0

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    source = open_source("rtsp://camera.local/stream")
    assert source.live and source.frame_count is None and opened == ["rtsp://camera.local/stream"]


def test_frame_validates_its_image():
    with pytest.raises(ValueError, match="uint8"):
        Frame(0, np.zeros((4, 4, 3), np.float32), None, "x")
    with pytest.raises(ValueError, match="non-negative"):
        Frame(-1, np.zeros((4, 4, 3), np.uint8), None, "x")
