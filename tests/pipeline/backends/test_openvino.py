"""OpenVINO: the precision the runtime reports, fp32 on request, one-line refusals, compiled models cached on disk."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino")

import openvino  # noqa: E402

from pipeline.backends import open_backend  # noqa: E402
from pipeline.backends.base import FP32_TOLERANCE  # noqa: E402
from pipeline.backends.openvino import OpenVinoBackend, supported_precisions  # noqa: E402
from pipeline.backends.torch import TorchBackend  # noqa: E402
from pipeline.core.errors import BackendError  # noqa: E402
from pipeline.model.artifacts import ModelFile  # noqa: E402
from pipeline.model.random_init import random_inputs  # noqa: E402


pytestmark = pytest.mark.usefixtures("private_engine_dirs")  # tests/conftest.py


def test_default_precision_is_what_the_runtime_says_this_cpu_computes(small_onnx):
    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    expected = "bf16" if "BF16" in capabilities else "fp32"
    assert supported_precisions()[0] == expected
    backend = OpenVinoBackend(ModelFile.read(small_onnx))
    assert backend.precision == expected
    hint = backend.compiled.get_property("INFERENCE_PRECISION_HINT")
    assert hint == (openvino.Type.bf16 if expected == "bf16" else openvino.Type.f32)


def test_fp32_can_be_forced_and_matches_torch_to_fp32_rounding(small_model, small_onnx):
    backend = open_backend("openvino", small_onnx, "cpu", precision="fp32")
    assert backend.precision == "fp32" and backend.parity_tolerance == FP32_TOLERANCE
    crops, vectors = random_inputs(small_model.spec, 6, seed=1)
    expected = TorchBackend(small_model).refine(crops, vectors)
    assert np.abs(backend.refine(crops, vectors) - expected).max() <= FP32_TOLERANCE


@pytest.mark.parametrize(
    ("device", "precision", "message"),
    [("cuda", None, "runs on the CPU"), ("cpu", "int4", "precision 'int4' is not one of bf16, fp32")],
)
def test_bad_requests_are_one_line_errors(small_onnx, device, precision, message):
    with pytest.raises(BackendError, match=message) as error:
        OpenVinoBackend(ModelFile.read(small_onnx), device, precision=precision)
    assert "\n" not in str(error.value)


def test_compiled_models_are_cached_under_engines_cache(small_checkpoint, private_engine_dirs):
    open_backend("openvino", small_checkpoint, "cpu")
    cached = list((private_engine_dirs / "engines" / "cache" / "openvino").iterdir())
    assert cached, "no compiled model in the cache folder"
    open_backend("openvino", small_checkpoint, "cpu")  # a restart reads it back
    assert sorted(cached) == sorted((private_engine_dirs / "engines" / "cache" / "openvino").iterdir())


@pytest.mark.slow
def test_the_cli_runs_the_synthetic_demo_on_openvino_end_to_end(tmp_path):
    """`python -m pipeline --backend openvino`: the choice comes from the registry and the run says which backend ran."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    command = [sys.executable, "-m", "pipeline", "--source", "synthetic", "--backend", "openvino", "--max-frames", "3",
               "--output", str(tmp_path / "demo")]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "demo" / "run" / "summary.json").read_text())
    assert summary["refiner"]["backend"] == "openvino" and summary["refiner"]["device"] == "cpu"
    assert summary["frames"]["processed"] == 3
    scores = json.loads((tmp_path / "demo" / "demo-scores.json").read_text())
    assert scores["refined"]["AP"] >= 0 and scores["detector"]["AP"] >= 0
