"""The latency benchmark end to end on a tiny random refiner: one frame, documented keys in the JSON."""

from __future__ import annotations

import json

from benchmarks.__main__ import main
from benchmarks.latency import STAGES
from pipeline.core.spec import RefinerSpec
from pipeline.model.checkpoint import save_refiner
from pipeline.model.export import export_onnx
from pipeline.model.random_init import random_refiner

TINY = RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=("person",))


def test_latency_writes_every_documented_key_per_box_count(tmp_path):
    model = export_onnx(random_refiner(TINY), tmp_path / "tiny.onnx", max_batch=4)
    out = tmp_path / "latency.json"
    main(
        [
            "latency",
            "--refiner",
            str(model),
            "--out",
            str(out),
            *["--boxes", "1,3", "--frames", "1", "--warmup", "1", "--frame", "160x120"],
        ]
    )
    report = json.loads(out.read_text())
    assert [row["boxes"] for row in report["results"]] == [1, 3]
    for row in report["results"]:
        for stage in STAGES:
            assert f"{stage}_ms_p50" in row and f"{stage}_ms_p95" in row
        for stage in ("crop", "crop_pool", "infer", "decode", "overhead"):
            assert row[f"{stage}_ms_p50"] > 0
        assert row["input_size"] == 64
        if report["settings"]["device"] == "cpu":  # transfers are measured on CUDA only
            assert row["h2d_ms_p50"] is None and row["d2h_ms_p50"] is None
    assert report["machine"]["cores"] and report["versions"]["onnxruntime"]
    assert report["command"].startswith("python -m benchmarks latency")
    assert out.with_suffix(".md").read_text().startswith("# Refinement latency")


def test_engine_builds_report_build_time_and_size_per_precision(tmp_path):
    """TensorRT-RTX builds without a GPU, so this runs in CI: one real engine per precision."""
    checkpoint = save_refiner(random_refiner(TINY), tmp_path / "tiny.safetensors")
    out = tmp_path / "latency.json"
    arguments = ["--boxes", "1", "--frames", "1", "--warmup", "0", "--frame", "160x120", "--engine-builds", "fp16,fp32"]
    main(["latency", "--refiner", str(checkpoint), "--out", str(out), *arguments])
    builds = json.loads(out.read_text())["engine_builds"]
    assert [(row["model"], row["precision"]) for row in builds] == [("tiny", "fp16"), ("tiny", "fp32")]
    for row in builds:
        assert row["build_s"] > 0 and row["onnx_export_s"] > 0 and row["engine_mb"] > 0.1
        assert row["tensorrt"].startswith("TensorRT-RTX") and row["targets"] == "sm80,sm86,sm89,sm120,sm121"
    assert builds[0]["onnx_mb"] < builds[1]["onnx_mb"]  # the FP16 ONNX holds half weights
    assert "TensorRT-RTX engine builds" in out.with_suffix(".md").read_text()
