"""Whole runs under faults: streams that drop, corrupt files, unwritable outputs, and a soak test."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.app.cli import main
from pipeline.app.run import RunConfig, run
from pipeline.core.types import Frame
from pipeline.io.sources import CaptureSource, FrameSource, Reconnect
from tests.pipeline.app.test_cli import tiny_refiner, write_clip, write_mot_detections

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUICK_RECONNECT = Reconnect(tries=3, first_delay=0.01, max_delay=0.02)


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def jsonl_frames(run_dir: Path) -> list[int]:
    return [json.loads(line)["frame"] for line in (run_dir / "detections.jsonl").read_text().splitlines()]


def assert_frames_accounted(frames: dict[str, int], run_dir: Path) -> None:
    """Every frame read is processed (one detections.jsonl line each, consecutive per stream), dropped or unfinished."""
    assert frames["read"] == frames["processed"] + frames["dropped"] + frames["unfinished"]
    assert min(frames.values()) >= 0
    assert len(jsonl_frames(run_dir)) == frames["processed"]


def baseline_config(source: Path, detections: Path, output: Path, **options) -> RunConfig:
    return RunConfig(source=str(source), detector=detections, refine=False, output=output, progress=False, **options)


def test_a_dropped_live_stream_reconnects_and_the_summary_counts_it(tmp_path):
    clip, detections = write_clip(tmp_path / "clip.mp4", 12), write_mot_detections(tmp_path / "det.txt", 12)
    # A file read as a live stream "drops" at its end; reopening it is a real reconnect.
    ticks = iter(range(1000))  # a clock that advances 0.4 s per reading: each outage lasts exactly 0.4 s
    source = CaptureSource(str(clip), live=True, reconnect=QUICK_RECONNECT, clock=lambda: 0.4 * next(ticks))
    report = run(baseline_config(clip, detections, tmp_path / "run", max_frames=30), sources=[source])
    summary = read_summary(tmp_path / "run")
    assert report.exit_code == 0 and summary["status"] == "completed"
    assert summary["source"]["reconnects"] == 2 and summary["frames"]["read"] == 30
    assert source.fps == 25.0 and summary["frames"]["lost"] == 2 * 10  # two outages of 0.4 s at 25 FPS
    assert_frames_accounted(summary["frames"], tmp_path / "run")


def test_a_stream_that_stays_down_fails_after_its_tries_and_keeps_every_frame(tmp_path):
    clip, detections = write_clip(tmp_path / "clip.mp4", 12), write_mot_detections(tmp_path / "det.txt", 12)
    source = CaptureSource(str(clip), live=True, reconnect=QUICK_RECONNECT)
    clip.unlink()  # the open capture still reads its 12 frames; every reopen fails
    report = run(baseline_config(clip, detections, tmp_path / "run", queue_size=64), sources=[source])
    summary = read_summary(tmp_path / "run")
    assert report.exit_code == 1 and summary["status"] == "failed"
    assert "did not come back in 3 tries" in summary["error"] and summary["unfinished_stages"] == []
    assert jsonl_frames(tmp_path / "run") == list(range(12))


def test_interrupt_cuts_a_reconnect_back_off_short(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 2)
    source = CaptureSource(str(clip), live=True, reconnect=Reconnect(tries=2, first_delay=30.0, max_delay=30.0))
    frames = iter(source)
    next(frames), next(frames)
    threading.Timer(0.2, source.interrupt).start()
    # Cut short, the stream ends (None); not cut short, the reopen after 30 s succeeds and yields a frame.
    assert next(frames, None) is None


def corrupt_clip(path: Path, frames: int = 30) -> Path:
    """An mp4v clip whose middle third is overwritten with random bytes; OpenCV decodes its first frames only."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for index in range(frames):
        writer.write(np.full((120, 160, 3), index * 8, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def test_a_video_corrupt_mid_stream_ends_at_its_last_good_frame_with_a_warning(tmp_path, capsys):
    clip, detections = corrupt_clip(tmp_path / "corrupt.mp4"), write_mot_detections(tmp_path / "det.txt", 30)
    arguments = ["--source", str(clip), "--detector", str(detections), "--no-refine", "--output", str(tmp_path / "run")]
    assert main(arguments) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "stopped decoding after" in err
    summary = read_summary(tmp_path / "run")
    assert summary["source"]["ended_early"] is True and 0 < summary["frames"]["processed"] < 30
    assert jsonl_frames(tmp_path / "run") == list(range(summary["frames"]["processed"]))


@pytest.mark.parametrize(
    "output, extra, message",
    [
        ("/proc/bbrefinement/run", [], "cannot write in /proc"),
        ("{file}/run", [], "which is a file"),
        ("{tmp}/run", ["--min-free-mb", "1e12"], "MB free in"),
    ],
)
def test_unwritable_or_full_output_is_refused_before_any_work(tmp_path, capsys, output, extra, message):
    clip, detections = write_clip(tmp_path / "clip.mp4", 2), write_mot_detections(tmp_path / "det.txt", 2)
    (tmp_path / "file").write_text("not a folder")
    output = output.format(file=tmp_path / "file", tmp=tmp_path)
    arguments = ["--source", str(clip), "--detector", str(detections), "--no-refine", "--output", output, *extra]
    assert main(arguments) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "--output" in err[0]
    assert not Path(output).exists()


class GeneratedSource(FrameSource):
    """Fresh frames from memory as fast as they are asked for, sampling this process's RSS as it goes."""

    def __init__(self, frames: int, live: bool, size: tuple[int, int] = (96, 64)) -> None:
        self.frames, self.live, self.size = frames, live, size
        self.description = f"{frames} generated frames"
        self.rss_mb: list[float] = []

    def __iter__(self) -> Iterator[Frame]:
        for index in range(self.frames):
            if index % 250 == 0:
                self.rss_mb.append(resident_mb())
            image = np.full((self.size[1], self.size[0], 3), index % 256, np.uint8)
            yield Frame(index, image, None, f"generated#{index}")


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc to read memory use")
@pytest.mark.parametrize("live", [False, True])
def test_soak_thousands_of_frames_keep_memory_flat(tmp_path, live):
    frames = 3000
    detections = write_mot_detections(tmp_path / "det.txt", frames)
    refiner = tiny_refiner(tmp_path / "refiner.safetensors")
    source = GeneratedSource(frames, live)
    config = RunConfig(source="generated", detector=detections, refiner=refiner, backend="torch", device="cpu",
                       output=tmp_path / "run", progress=False)
    report = run(config, sources=[source])
    summary = read_summary(tmp_path / "run")
    assert report.exit_code == 0 and summary["frames"]["read"] == frames
    processed, dropped = summary["frames"]["processed"], summary["frames"]["dropped"]
    assert processed + dropped == frames and len(jsonl_frames(tmp_path / "run")) == processed
    if not live:
        assert dropped == 0  # a file never loses a frame: the reader waits
    # After warm-up (models loaded, buffers allocated), memory stays flat however many frames pass.
    settled = source.rss_mb[2:]
    assert max(settled) - settled[0] < 40, f"RSS grew from {settled[0]:.0f} to {max(settled):.0f} MB"


class SlowToWarmDetector:
    """A detector whose warm-up (seconds for a real model) must wait until the class check has passed."""

    def __init__(self, class_names: tuple[str, ...]) -> None:
        self.class_names = class_names
        self.profile = "generic"
        self.warmed = False

    def warm_up(self) -> None:
        self.warmed = True

    def detect(self, frame: Frame):
        from pipeline.core.types import Detections

        return Detections.empty(self.class_names)


def test_the_detector_warms_up_only_after_the_class_check(tmp_path):
    from pipeline.core.errors import ClassMappingError

    clip = write_clip(tmp_path / "clip.mp4", 2)
    refiner = tiny_refiner(tmp_path / "refiner.safetensors")
    wrong = SlowToWarmDetector(("cat", "dog"))
    config = RunConfig(source=str(clip), refiner=refiner, backend="torch", device="cpu", output=tmp_path / "run")
    with pytest.raises(ClassMappingError):
        run(config, detector=wrong)
    assert not wrong.warmed and not (tmp_path / "run").exists()
    right = SlowToWarmDetector(("person",))
    assert run(config, detector=right).exit_code == 0 and right.warmed
