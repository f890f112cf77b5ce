"""build_engine.py: ONNX + engine + sidecars per backbone with the ORT-vs-torch difference printed; bad input is one line.

The engines themselves (what TensorRT parsed, sizes, profiles) are checked in tests/test_tensorrt_engines.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.backends.build import ONNX_TOLERANCE, main
from pipeline.model.random_init import random_refiner
import torch

from pipeline.core.spec import RefinerSpec
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


def test_checkpoint_builds_under_its_own_name_and_says_when_it_overwrites(tmp_path, capsys):
    spec = RefinerSpec(backbone="efficientnet_b0", input_size=128, class_names=("person", "car"))
    checkpoint = save_refiner(random_refiner(spec), tmp_path / "refiner-person-trained.safetensors")
    assert main(["--refiner", str(checkpoint), "--out", str(tmp_path / "out"), "--precision", "fp32"]) == 0
    sidecar = read_sidecar(tmp_path / "out" / "refiner-person-trained.onnx")
    assert sidecar["checkpoint_sha256"] == file_sha256(checkpoint)
    assert json.dumps(sidecar["spec"], sort_keys=True) == spec.to_json()
    assert f"--refiner {checkpoint}" in sidecar["rebuild_command"] and "--precision fp32" in sidecar["rebuild_command"]
    first = capsys.readouterr().out
    assert "refiner-person-trained: " in first and "overwriting" not in first
    assert main(["--refiner", str(checkpoint), "--out", str(tmp_path / "out"), "--precision", "fp32"]) == 0
    assert f"overwriting {tmp_path / 'out' / 'refiner-person-trained.onnx'}" in capsys.readouterr().out


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
def test_bad_tensorrt_options_are_usage_errors(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--backbones", "b0", *arguments])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU exists")
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--compute-capability", "current"], "error: --compute-capability current needs a CUDA GPU; torch sees none"),
        (["--trt", "tensorrt"], "error: "),  # not importable here, or needs a GPU to build: either way before any output
    ],
)
def test_engines_this_machine_cannot_build_are_one_line_errors(tmp_path, capsys, arguments, message):
    assert main(["--backbones", "b0", "--out", str(tmp_path / "out"), *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith(message) and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_unknown_backbone_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--backbones", "b0,b9"])
    assert exit_info.value.code == 2 and "choose from b0,b1,b2,b3,b4,lite0,lite1,lite2" in capsys.readouterr().err


def test_triton_repo_holds_the_built_onnx_and_engine_with_parsing_configs(tmp_path, capsys):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    spec = RefinerSpec(backbone="efficientnet_b0", input_size=128, class_names=("person", "car"))
    checkpoint = save_refiner(random_refiner(spec), tmp_path / "refiner-person-trained.safetensors")
    out, repo = tmp_path / "out", tmp_path / "repo"
    arguments = ["--refiner", str(checkpoint), "--out", str(out), "--max-batch", "4", "--compute-capability", "sm86,sm120"]
    assert main([*arguments, "--triton-repo", str(repo)]) == 0
    assert "triton model refiner-person-trained-trt: " in capsys.readouterr().out
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
def test_int8_calibration_writes_a_quantised_onnx_with_its_provenance(tmp_path, coco_person, capsys):
    """Real NNCF on a small refiner, calibrated on 8 crops of coco-person's training images, provenance in the sidecar."""
    # B0 at 128 px: a random-init MobileNetV3 at 64 px is chaotic enough to fail the BF16 parity check (0.19)
    spec = RefinerSpec(backbone="efficientnet_b0", input_size=128, class_names=("person",))
    checkpoint = save_refiner(random_refiner(spec), tmp_path / "refiner-tiny.safetensors")
    calibration = [str(coco_person / "annotations" / "instances_person.json"), str(coco_person / "images")]
    arguments = ["--refiner", str(checkpoint), "--out", str(tmp_path / "out"), "--precision", "fp32",
                 "--int8-calibration", *calibration, "--int8-crops", "8"]
    assert main(arguments) == 0
    int8 = tmp_path / "out" / "refiner-tiny.int8.onnx"
    sidecar = read_sidecar(int8)
    assert read_spec(int8) == spec and sidecar["precision"] == "int8" and sidecar["int8"]["crops"] == 8
    assert sidecar["int8"]["calibration"] == [calibration] and sidecar["checkpoint_sha256"] == file_sha256(checkpoint)
    assert "--int8-calibration " + " ".join(calibration) + " --int8-crops 8" in sidecar["rebuild_command"]
    assert "refiner-tiny.int8: " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--backbones", "b0", "--int8-calibration", "a.json", "images"], "quantises a trained --refiner"),
        (["--refiner", "x.safetensors", "--int8-calibration", "a.json"], "takes ANNOTATIONS IMAGES [DETECTIONS]"),
    ],
)
def test_bad_int8_options_are_usage_errors(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
