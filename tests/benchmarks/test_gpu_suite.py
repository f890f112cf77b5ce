"""The GPU suite's dry run (what CI can run): CUDA parts skipped with their reason, engine builds and FPS really run."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main
from benchmarks.gpu import CUDA_TESTS, Part, paper_rows, run_part

pytestmark = pytest.mark.slow


def test_dry_run_skips_cuda_parts_with_reasons_and_really_runs_the_rest(tmp_path):
    out = tmp_path / "suite"
    # --backbones '': only the committed refiner (one real engine build); --clip absent: the generated clip.
    arguments = ["--backbones", "", "--boxes", "1,2", "--iterations", "1", "--fps-frames", "3", "--clip", str(tmp_path / "none.mp4")]
    main(["gpu", "--dry", "--out", str(out), *arguments])
    report = json.loads((out / "gpu-suite.json").read_text())
    parts = {part["name"]: part for part in report["parts"]}
    assert report["dry"] is True and list(parts) == ["cuda_tests", "torch_fp16", "gpu_crops", "tensorrt_rtx", "fps"]
    for name in ("cuda_tests", "torch_fp16", "gpu_crops"):
        assert parts[name]["status"] == "skipped" and parts[name]["reason"] == "needs CUDA: --dry was given"
    engines = parts["tensorrt_rtx"]
    assert engines["status"] == "ran", engines["reason"]
    (build,) = engines["results"]["builds"]
    assert "committed" in build["model"] and build["build_s"] > 0 and build["engine_mb"] > 1
    assert engines["results"]["targets"] == ["sm80", "sm86", "sm89", "sm120", "sm121"]
    assert engines["results"]["runs"][0]["skipped"] == "running needs CUDA: --dry was given"
    fps = parts["fps"]
    assert fps["status"] == "ran", fps["reason"]
    assert set(fps["results"]["runs"]) == {"detect_only", "refined"} and "absent" in fps["results"]["note"]
    assert all(run["fps"] > 0 and run["frames"] == 3 for run in fps["results"]["runs"].values())
    assert fps["results"]["runs"]["refined"]["backend"] == "onnxruntime"
    markdown = (out / "gpu-suite.md").read_text()
    assert "**Dry run** (--dry was given)" in markdown and "| B1 inference | 23.0 ms | n/a | torch FP16 + CUDA graphs |" in markdown
    assert "| crop preparation | 32.0 ms | n/a |" in markdown


def test_a_failing_part_is_one_line_and_the_suite_goes_on():
    def broken():
        raise RuntimeError("engine\nrefused")

    part = run_part("tensorrt_rtx", None, broken)
    assert (part.status, part.reason) == ("failed", "RuntimeError: engine refused")
    assert run_part("gpu_crops", "torch sees no CUDA GPU", broken).reason == "needs CUDA: torch sees no CUDA GPU"


def test_paper_rows_take_the_box_count_nearest_eight():
    torch_rows = [{"model": "b1", "cuda_graphs": True, "boxes": boxes, "ms_p50": float(boxes)} for boxes in (1, 8, 32)]
    parts = {name: Part(name, "skipped") for name in ("torch_fp16", "gpu_crops", "tensorrt_rtx", "fps")}
    parts["torch_fp16"] = Part("torch_fp16", "ran", results=torch_rows)
    parts["tensorrt_rtx"] = Part("tensorrt_rtx", "ran", results={"runs": [{"model": "b3", "ms_p50_p95_by_boxes": {"1": [2, 3], "32": [9, 9]}}]})
    rows = {(row[0], row[3]): row[2] for row in paper_rows(parts)}
    assert rows[("B1 inference", "torch FP16 + CUDA graphs")] == 8.0 and rows[("B3 inference", "torch FP16 + CUDA graphs")] is None
    assert rows[("B3 inference", "TensorRT-RTX FP16")] == 2  # 1 box is nearer 8 than 32


def test_cuda_tests_exist():
    from pipeline.model.defaults import REPO_ROOT

    assert all((REPO_ROOT / path).is_file() for path in CUDA_TESTS)
