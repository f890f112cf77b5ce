"""`python -m pipeline.app.synthetic_data`: the command line that writes generated scenes; it prints what it wrote."""

from __future__ import annotations

import json

import cv2

from pipeline.app.synthetic_data import main


def test_clip_writes_the_video_and_its_ground_truth(tmp_path, capsys):
    assert main(["clip", "--out", str(tmp_path / "clip.mp4"), "--frames", "3", "--size", "96x64", "--objects", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "clip.json")
    capture = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()
    assert len(json.loads((tmp_path / "clip.json").read_text())["images"]) == 3


def test_dataset_with_yolo_labels_is_ready_for_training(tmp_path, capsys):
    assert main(["dataset", "--out", str(tmp_path), "--images", "2", "--size", "128x96", "--seed", "1", "--yolo"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "annotations.json"), str(tmp_path / "data.yaml")]
    assert (tmp_path / "annotations.json").exists() and (tmp_path / "data.yaml").exists()
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["000000.txt", "000001.txt"]
