"""The FPS benchmark end to end: a short clip, replayed detections, a tiny random refiner."""

from __future__ import annotations

import json

from benchmarks.__main__ import main
from pipeline.core.spec import RefinerSpec
from pipeline.data.synthetic import write_clip
from pipeline.model.export import export_onnx
from pipeline.model.random_init import random_refiner

FRAMES = 4


def test_fps_reports_both_runs_and_the_overhead(tmp_path):
    clip = tmp_path / "clip.mp4"
    write_clip(clip, FRAMES, 160, 120, seed=0)
    # Without a GT json, replayed COCO results use image id = frame index + 1 and class name = category id.
    detections = [
        {"image_id": frame + 1, "category_id": 1, "bbox": [20 + 5 * frame, 30, 40, 60], "score": 0.9} for frame in range(FRAMES)
    ]
    (tmp_path / "detections.json").write_text(json.dumps(detections))
    spec = RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=("1",))
    refiner = export_onnx(random_refiner(spec), tmp_path / "tiny.onnx", max_batch=4)
    out = tmp_path / "fps.json"
    main(
        ["fps", "--source", str(clip), "--detector", str(tmp_path / "detections.json"), "--refiner", str(refiner)]
        + ["--backend", "onnxruntime", "--out", str(out)]
    )
    report = json.loads(out.read_text())
    assert report["frames"] == FRAMES and sum(report["objects"].values()) == FRAMES  # refined or gated
    assert report["fps_refined"] > 0 and report["fps_detect_only"] > 0 and report["fps_detector_bare"] > 0
    assert isinstance(report["overhead_ms_per_frame"], float)
    assert set(report["stage_latency_ms"]["refined"]) >= {"detect", "crop", "refine", "write"}
    occupancy = report["queue_occupancy"]["refined"]
    assert set(occupancy) == {"detect", "crop", "refine", "write"}
    assert all(1 <= stage["max"] <= stage["capacity"] for stage in occupancy.values())
