"""build_engine.py and the library under it: ONNX + engine + sidecars per backbone with each runtime's difference from
torch reported; bad input is one line from the CLI and a raised error from the library.

The engines themselves (what TensorRT parsed, sizes, profiles) are checked in tests/test_tensorrt_engines.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.model.artifacts import ModelFile

import torch

from pipeline.backends.build import ONNX_TOLERANCE, BuildOptions, build_all, models_to_build
from pipeline.backends.tensorrt import TensorRTUnavailable
from pipeline.core.errors import UsageError
from pipeline.core.spec import RefinerSpec
from pipeline.model.random_init import random_refiner
from pipeline.model.artifacts import file_sha256, read_spec, read_sidecar
from pipeline.model.checkpoint import save_refiner

REPO = Path(__file__).resolve().parents[3]


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "build_engine.py", *arguments], cwd=REPO, check=False, capture_output=True, text=True, timeout=600
    )


def test_random_backbone_builds_onnx_with_sidecar_and_reports_parity(tmp_path):
    result = run_cli("--backbones", "b0", "--max-batch", "4", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    onnx_path = tmp_path / "refiner-efficientnet_b0-224.onnx"
    assert read_spec(onnx_path).backbone == "efficientnet_b0"
    sidecar = read_sidecar(onnx_path)
    assert sidecar["precision"] == "fp32" and sidecar["max_batch"] == 4 and sidecar["tensorrt"] is None
    assert sidecar["max_abs_difference_vs_torch"] <= ONNX_TOLERANCE
    assert set(sidecar["versions"]) >= {"torch", "onnx", "onnxruntime"}
    assert sidecar["rebuild_command"].startswith("python build_engine.py --backbones b0 --classes person")
    assert "ONNX Runtime vs torch max |diff|" in result.stdout
    openvino = sidecar["cpu_runtimes_vs_torch"]["openvino"]  # every registered CPU runtime of the ONNX is checked
    assert "skipped" in openvino or (openvino["max_abs_difference"] <= openvino["tolerance"] and "OpenVINO (" in result.stdout)
    engine = read_sidecar(tmp_path / "refiner-efficientnet_b0-224.engine")  # TensorRT-RTX builds without a GPU
    assert engine["tensorrt_flavour"] in ("rtx", "tensorrt") and engine["profile"] == {"minimum": 1, "optimum": 4, "maximum": 4}
    assert f"--trt {engine['tensorrt_flavour']} " in engine["rebuild_command"]  # what auto chose, not "auto"
    if not torch.cuda.is_available():
        assert result.stdout.count("not executed: TensorRT-RTX") == 1 and engine["executed"] is False


def test_checkpoint_builds_under_its_own_name_and_says_when_it_overwrites(tmp_path):
    spec = RefinerSpec(backbone="efficientnet_b0", input_size=128, class_names=("person", "car"))
    checkpoint = save_refiner(random_refiner(spec), tmp_path / "refiner-person-trained.safetensors")
    lines: list[str] = []
    options = BuildOptions(out=tmp_path / "out", precision="fp32", report=lines.append)
    build_all(models_to_build(checkpoint), options)
    sidecar = read_sidecar(tmp_path / "out" / "refiner-person-trained.onnx")
    assert sidecar["checkpoint_sha256"] == file_sha256(checkpoint)
    saved = ModelFile.read(checkpoint).spec  # the spec as saved: with the digest of its weights
    assert saved.weights_digest.startswith("sha256:") and json.dumps(sidecar["spec"], sort_keys=True) == saved.to_json()
    assert f"--refiner {checkpoint}" in sidecar["rebuild_command"] and "--precision fp32" in sidecar["rebuild_command"]
    assert any(line.startswith("refiner-person-trained: ") for line in lines) and not any("overwriting" in line for line in lines)
    lines.clear()
    build_all(models_to_build(checkpoint), options)
    assert f"overwriting {tmp_path / 'out' / 'refiner-person-trained.onnx'} (and its sidecar)" in lines


@pytest.mark.parametrize("content", [None, b"not a safetensors file"], ids=["missing", "corrupt"])
def test_bad_checkpoint_is_one_line_and_non_zero(tmp_path, content):
    checkpoint = tmp_path / "refiner.safetensors"
    if content is not None:
        checkpoint.write_bytes(content)
    result = run_cli("--refiner", str(checkpoint), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--compute-capability", "sm90"], "choose from sm75, sm80, sm86, sm89, sm120, sm121, portable or current"),
        (["--trt", "tensorrt-llm"], "invalid choice"),
    ],
)
def test_bad_tensorrt_options_are_usage_errors(arguments, message):
    result = run_cli("--backbones", "b0", *arguments)
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU exists")
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"compute_capability": ("current",)}, "--compute-capability current needs a CUDA GPU; torch sees none"),
        ({"trt": "tensorrt"}, None),  # not importable here, or needs a GPU to build: either way before any output
    ],
)
def test_engines_this_machine_cannot_build_are_raised_before_any_output(tmp_path, changes, message):
    with pytest.raises(TensorRTUnavailable, match=message) as error:
        build_all(models_to_build(backbones=("b0",)), BuildOptions(out=tmp_path / "out", **changes))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_unknown_backbone_is_a_usage_error():
    result = run_cli("--backbones", "b0,b9")
    assert result.returncode == 2 and "choose from b0,b1,b2,b3,b4,lite0,lite1,lite2" in result.stderr
    with pytest.raises(UsageError, match="choose from b0,b1"):
        next(models_to_build(backbones=("b9",)))


@pytest.mark.parametrize("changes", [{"max_batch": 0}, {"triton_queue_timeout_ms": 0}, {"precision": "int3"}])
def test_bad_options_are_refused_when_made(changes):
    with pytest.raises(UsageError):
        BuildOptions(**changes)


def test_help_shows_each_default_once():
    help_text = " ".join(run_cli("--help").stdout.split())  # unwrap argparse's line breaks
    for option, default in [("--max-batch", "32"), ("--opt-batch", "8"), ("--precision", "fp16"), ("--seed", "0")]:
        section = help_text.split(f"{option} ", 2)[2].split(" --")[0]  # the option's own help, after the usage line
        assert section.count("default") == 1 and f"(default: {default})" in section, section


def test_triton_repo_holds_the_built_onnx_and_engine_with_parsing_configs(tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    spec = RefinerSpec(backbone="efficientnet_b0", input_size=128, class_names=("person", "car"))
    checkpoint = save_refiner(random_refiner(spec), tmp_path / "refiner-person-trained.safetensors")
    out, repo = tmp_path / "out", tmp_path / "repo"
    lines: list[str] = []
    options = BuildOptions(out=out, max_batch=4, compute_capability=("sm86", "sm120"), triton_repo=repo, report=lines.append)
    build_all(models_to_build(checkpoint), options)
    assert any(line.startswith("triton model refiner-person-trained-trt: ") for line in lines)
    onnx_model, engine_model = repo / "refiner-person-trained", repo / "refiner-person-trained-trt"
    assert (onnx_model / "1" / "model.onnx").read_bytes() == (out / "refiner-person-trained.onnx").read_bytes()
    assert (engine_model / "1" / "model.plan").read_bytes() == (out / "refiner-person-trained.engine").read_bytes()
    configs = [
        text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        for folder in (onnx_model, engine_model)
    ]
    assert [config.platform for config in configs] == ["onnxruntime_onnx", "tensorrt_plan"]
    assert dict(configs[1].cc_model_filenames) == {"8.6": "model.plan", "12.0": "model.plan"}
    for config in configs:
        assert config.max_batch_size == 4
        inputs = [(tensor.name, list(tensor.dims)) for tensor in config.input]
        assert inputs == [("crops", [128, 128, 3]), ("vectors", [spec.vector_size])]
        assert RefinerSpec.from_json(config.parameters["bbrefinement.spec"].string_value) == spec


@pytest.mark.slow
def test_int8_calibration_writes_a_quantised_onnx_with_its_provenance(tmp_path, coco_person):
    """Real NNCF on a small refiner, calibrated on 8 crops of coco-person's training images, provenance in the sidecar."""
    # B0 at 128 px: a random-init MobileNetV3 at 64 px is chaotic enough to fail the BF16 parity check (0.19)
    spec = RefinerSpec(backbone="efficientnet_b0", input_size=128, class_names=("person",))
    checkpoint = save_refiner(random_refiner(spec), tmp_path / "refiner-tiny.safetensors")
    calibration = (coco_person / "annotations" / "instances_person.json", coco_person / "images")
    lines: list[str] = []
    options = BuildOptions(out=tmp_path / "out", precision="fp32", int8_calibration=(calibration,), int8_crops=8, report=lines.append)
    build_all(models_to_build(checkpoint), options)
    int8 = tmp_path / "out" / "refiner-tiny.int8.onnx"
    sidecar = read_sidecar(int8)
    assert read_spec(int8) == spec and sidecar["precision"] == "int8" and sidecar["int8"]["crops"] == 8
    assert sidecar["int8"]["calibration"] == [[str(path) for path in calibration]]
    assert sidecar["checkpoint_sha256"] == file_sha256(checkpoint)
    assert "--int8-calibration " + " ".join(map(str, calibration)) + " --int8-crops 8" in sidecar["rebuild_command"]
    assert any(line.startswith("refiner-tiny.int8: ") for line in lines)


def test_int8_calibration_needs_a_trained_refiner_and_two_or_three_paths(tmp_path):
    with pytest.raises(UsageError, match="takes ANNOTATIONS IMAGES"):
        BuildOptions(int8_calibration=((Path("a.json"),),))
    options = BuildOptions(out=tmp_path, int8_calibration=((Path("a.json"), Path("images")),))
    with pytest.raises(UsageError, match="quantises a trained --refiner"):
        build_all(models_to_build(backbones=("b0",)), options)
    assert not list(tmp_path.iterdir())  # refused before any work
