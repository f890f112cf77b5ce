"""Contact sheet: the frames where refined boxes moved most, apart from each other, drawn with a legend."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from pipeline.app.contact_sheet import PANEL_HEIGHT, pick_frames, write_contact_sheet
from pipeline.io.sinks import REFINED_COLOUR


def write_run(folder: Path, shifts: list[float | None]) -> tuple[Path, Path]:
    """A 320x240 clip and its detections.jsonl: one box per frame, moved by `shift` px (None: not refined)."""
    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    lines = []
    for index, shift in enumerate(shifts):
        writer.write(np.full((240, 320, 3), 90, np.uint8))
        box = [100.0, 60.0, 200.0, 200.0]
        refined = None if shift is None else [v + shift for v in box]
        status = "unmapped" if shift is None else "refined"
        lines.append({"frame": index, "objects": [{"class": "person", "score": 0.9, "detector_box": box, "refined_box": refined, "status": status}]})
    writer.release()
    jsonl = folder / "detections.jsonl"
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return video, jsonl


def test_picks_the_largest_moves_at_least_min_gap_apart_in_frame_order(tmp_path):
    shifts = [1.0] * 30
    shifts[5], shifts[6], shifts[20] = 9.0, 8.0, 5.0
    _, jsonl = write_run(tmp_path, shifts)
    picks = pick_frames(jsonl, count=2, min_gap=10)
    assert [pick.frame for pick in picks] == [5, 20] and picks[0].shift_px == 9.0


def test_sheet_has_a_row_per_pick_and_shows_refined_boxes(tmp_path):
    video, jsonl = write_run(tmp_path, [2.0] * 3 + [None] * 30 + [4.0] * 3)
    sheet_path = write_contact_sheet(video, jsonl, tmp_path / "sheet.png", count=4)
    sheet = cv2.imread(str(sheet_path))
    assert sheet.shape[0] > 2 * PANEL_HEIGHT  # header + two rows (frames 0..2 and 33..35 are within the gap)
    assert (sheet == REFINED_COLOUR).all(axis=2).sum() > 100


def test_no_refined_box_no_sheet(tmp_path):
    video, jsonl = write_run(tmp_path, [None] * 5)
    assert write_contact_sheet(video, jsonl, tmp_path / "sheet.png") is None and not (tmp_path / "sheet.png").exists()
