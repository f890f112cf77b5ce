"""The crowd benchmark: its clip from mot17-mini frames, and its report from real pipeline runs (tiny refiner)."""

from __future__ import annotations

import json

import cv2
import pytest

from benchmarks.__main__ import main
from benchmarks.crowd import CROWD_SEQUENCES, build_crowd_clip, crowd_frame_paths, parse_variants, pipeline_arguments
from pipeline.core.errors import UsageError
from pipeline.core.spec import RefinerSpec
from pipeline.data.synthetic import write_clip
from pipeline.model.export import export_onnx
from pipeline.model.random_init import random_refiner

FRAMES = 3


def test_crowd_frames_run_each_sequence_forth_and_back(mot17_mini):
    paths = crowd_frame_paths(mot17_mini)
    sequences = [path.parts[-3] for path in paths]
    assert sequences.index(CROWD_SEQUENCES[1]) == sequences.count(CROWD_SEQUENCES[0])  # one after the other
    first = [path.name for path in paths if path.parts[-3] == CROWD_SEQUENCES[0]]
    assert first == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg", "000003.jpg", "000002.jpg"]


def test_crowd_clip_loops_the_frames_at_full_size(mot17_mini, tmp_path):
    paths = crowd_frame_paths(mot17_mini)
    frames = len(paths) + 2  # longer than the frames: it loops
    clip = build_crowd_clip(mot17_mini, tmp_path / "crowd.mp4", frames)
    capture = cv2.VideoCapture(str(clip))
    decoded = []
    while (image := capture.read()[1]) is not None:
        decoded.append(image)
    capture.release()
    assert len(decoded) == frames and decoded[0].shape == (1080, 1920, 3)
    first = cv2.imread(str(paths[0])).astype(float)
    assert abs(decoded[len(paths)] - first).mean() < 8  # the loop starts over (lossy mp4v)
    assert abs(decoded[len(paths) - 1] - first).mean() > 8  # from another sequence's frame


def test_pipeline_arguments_drop_the_separator_and_refuse_what_the_benchmark_sets():
    assert pipeline_arguments(["--", "--backend", "openvino"]) == ["--backend", "openvino"]
    with pytest.raises(UsageError, match="--max-frames"):
        pipeline_arguments(["--", "--max-frames=3"])
    assert parse_variants([]) == {"default": []}
    assert parse_variants(["ov=--backend openvino --max-refine 8"]) == {"ov": ["--backend", "openvino", "--max-refine", "8"]}
    with pytest.raises(UsageError, match="NAME=ARGS"):
        parse_variants(["a=", "a=--min-size 4"])


def test_crowd_report_counts_fps_stages_and_boxes_of_real_runs(tmp_path):
    """A clip of your own (--clip), replayed detections and a tiny refiner through `python -m pipeline`."""
    clip = tmp_path / "clip.mp4"
    write_clip(clip, FRAMES, 160, 120, seed=0)
    # Without a GT json, replayed COCO results use image id = frame index + 1 and class name = category id.
    detections = [
        {"image_id": frame + 1, "category_id": category, "bbox": [20 + 5 * frame, 30, 40, 60], "score": 0.9}
        for frame in range(FRAMES) for category in (1, 2)
    ]
    (tmp_path / "detections.json").write_text(json.dumps(detections))
    spec = RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=("1",))
    refiner = export_onnx(random_refiner(spec), tmp_path / "tiny.onnx", max_batch=4)
    out = tmp_path / "crowd.json"
    main(["crowd", "--clips", "crowd", "--clip", str(clip), "--frames", str(FRAMES), "--repeats", "2", "--out", str(out),
          "--variant", "default=", "--variant", "small=--min-size 50", "--",
          "--detector", str(tmp_path / "detections.json"), "--refiner", str(refiner), "--backend", "onnxruntime"])
    report = json.loads(out.read_text())
    crowd, small = report["clips"]["crowd"]["default"], report["clips"]["crowd"]["small"]
    assert report["variants"]["small"][-2:] == ["--min-size", "50"] and list(report["clips"]) == ["crowd"]
    assert crowd["frames"] == FRAMES and crowd["frame_size"] == "160x120"
    assert len(crowd["fps_per_repeat"]["refined"]) == 2 and crowd["fps"]["detect_only"] > 0
    pairs = [refined / detect_only for refined, detect_only in zip(crowd["fps_per_repeat"]["refined"], crowd["fps_per_repeat"]["detect_only"])]
    assert crowd["fps_ratio"] == pytest.approx(sum(pairs) / 2, abs=2e-3)  # the median of two pairs is their mean
    assert crowd["fps_ratio_of_medians"] == round(crowd["fps"]["refined"] / crowd["fps"]["detect_only"], 3)
    assert crowd["boxes_per_frame"] == {"mean": 2.0, "min": 2, "max": 2}
    # class "2" is unknown to the refiner: skipped, with its reason
    assert crowd["boxes"]["total"] == 2 * FRAMES and crowd["boxes"]["refined"] == FRAMES
    assert crowd["boxes"]["skipped_by_reason"] == {"unmapped": FRAMES}
    assert {"read", "detect", "crop", "refine", "write"} <= set(crowd["latency_ms"]["refined"])
    assert "crop" not in crowd["latency_ms"]["detect_only"]
    assert small["boxes"]["skipped_by_reason"] == {"unmapped": FRAMES, "small": FRAMES}  # 40 px wide boxes
    assert "| crowd |" in out.with_suffix(".md").read_text()
