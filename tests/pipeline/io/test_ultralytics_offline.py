"""Offline setup for Ultralytics: environment and fonts, without importing Ultralytics."""

from __future__ import annotations

import os

from pipeline.io.ultralytics_offline import configure_offline_environment


def test_offline_environment_and_fonts(tmp_path, monkeypatch) -> None:
    for key in ("YOLO_OFFLINE", "YOLO_CONFIG_DIR", "OMP_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)  # restored after the test
    settings_dir = configure_offline_environment(tmp_path, num_threads=3)
    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_CONFIG_DIR"] == str(tmp_path)
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert settings_dir == tmp_path / "Ultralytics"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        assert (settings_dir / name).stat().st_size > 100_000  # a real TrueType font, not a stub
