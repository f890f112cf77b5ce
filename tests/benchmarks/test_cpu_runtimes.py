"""`latency --runtimes`: every runtime:precision on the same real crops, the baseline's speed-up 1.0, and what cannot run says why."""

from __future__ import annotations

import json

from benchmarks import cpu_runtimes
from benchmarks.__main__ import main
from pipeline.core.spec import RefinerSpec
from pipeline.model.checkpoint import save_refiner
from pipeline.model.random_init import random_refiner

TINY = RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=("person",))


def test_runtimes_side_by_side_with_speedups_and_reasons(tmp_path, coco_person, monkeypatch, private_engine_dirs):
    monkeypatch.setattr(cpu_runtimes, "SIZE_MODELS_DIR", tmp_path / "sizes")
    checkpoint = save_refiner(random_refiner(TINY), tmp_path / "tiny.safetensors")
    out = tmp_path / "runtimes.json"
    arguments = ["--runtimes", "openvino:fp32,openvino:int3,openvino:int8", "--sizes", "native,48", "--boxes", "2,4"]
    main(["latency", "--refiner", str(checkpoint), *arguments, "--frames", "2", "--warmup", "1", "--coco-dir", str(coco_person),
          "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    keys = {(row["input_size"], row["runtime"], row["boxes"]) for row in rows}
    runtimes = ("onnxruntime:fp32", "openvino:fp32", "openvino:int3", "openvino:int8")  # the baseline is always measured
    assert keys == {(size, runtime, boxes) for size in (64, 48) for runtime in runtimes for boxes in (2, 4)}
    for row in rows:
        if row["runtime"] == "openvino:int3":
            assert "precision 'int3' is not one of" in row["skipped"]
        elif row["runtime"] == "openvino:int8":  # no quantised model built: the row says how to make one
            assert ".int8.onnx" in row["skipped"] and "build_engine.py" in row["skipped"]
        elif row["runtime"] == "onnxruntime:fp32":
            assert row["speedup_vs_onnxruntime_fp32"] == 1.0
        else:
            assert row["ms_p50"] > 0 and row["speedup_vs_onnxruntime_fp32"] > 0
    assert "speed-up vs onnxruntime:fp32" in out.with_suffix(".md").read_text()


def test_the_int8_model_is_found_beside_the_refiner_or_in_engines(tmp_path, monkeypatch):
    from pipeline.model.artifacts import ModelFile
    from pipeline.model.export import export_onnx

    monkeypatch.setattr(cpu_runtimes, "ENGINES_DIR", tmp_path / "engines")
    checkpoint = save_refiner(random_refiner(TINY), tmp_path / "tiny.safetensors")
    assert cpu_runtimes.int8_model(ModelFile.read(checkpoint)) is None
    (tmp_path / "engines").mkdir()
    export_onnx(random_refiner(TINY), tmp_path / "engines" / "tiny.int8.onnx", max_batch=4)  # stands in for NNCF's output: same interface
    assert cpu_runtimes.int8_model(ModelFile.read(checkpoint)).path == tmp_path / "engines" / "tiny.int8.onnx"
