"""Triton model repository: every config.pbtxt parses as Triton's ModelConfig and says what the engine takes."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pipeline.backends.triton import served_spec
from pipeline.core.errors import BackendError
from pipeline.core.spec import RefinerSpec
from pipeline.model.triton_repo import Batching, compute_capability, model_config_text, write_triton_repository

SPEC = RefinerSpec(backbone="mobilenetv3_small_100", input_size=96, class_names=("person", 'car "quoted" \\ é'))


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


@pytest.fixture
def artifacts(tmp_path: Path) -> tuple[Path, Path]:
    """Stand-in artifact files: the writer copies them byte for byte, what is tested here is the config."""
    onnx_path, engine_path = tmp_path / "net.onnx", tmp_path / "net.engine"
    onnx_path.write_bytes(b"onnx bytes")
    engine_path.write_bytes(b"plan bytes")
    return onnx_path, engine_path


def test_repository_has_onnx_and_tensorrt_models_whose_configs_parse(tmp_path, artifacts):
    onnx_path, engine_path = artifacts
    batching = Batching(preferred_batch=8, queue_delay_us=1500, timeout_us=50_000, max_queue_size=16)
    configs = write_triton_repository(
        tmp_path / "repo", "refiner-x", SPEC, onnx_path, 32, engine_path, ("sm80", "sm86", "sm120"), batching
    )
    assert [path.parent.name for path in configs] == ["refiner-x", "refiner-x-trt"]
    onnx_config, trt_config = (parse(path) for path in configs)
    assert (tmp_path / "repo/refiner-x/1/model.onnx").read_bytes() == b"onnx bytes"
    assert (tmp_path / "repo/refiner-x-trt/1/model.plan").read_bytes() == b"plan bytes"
    assert (onnx_config.name, onnx_config.platform) == ("refiner-x", "onnxruntime_onnx")
    assert (trt_config.name, trt_config.platform) == ("refiner-x-trt", "tensorrt_plan")
    assert dict(trt_config.cc_model_filenames) == {"8.0": "model.plan", "8.6": "model.plan", "12.0": "model.plan"}
    assert not onnx_config.cc_model_filenames
    for config in (onnx_config, trt_config):
        assert config.max_batch_size == 32
        crops, vectors = config.input
        assert (crops.name, crops.data_type, list(crops.dims)) == ("crops", model_config_pb2.TYPE_UINT8, [96, 96, 3])
        vector_type = model_config_pb2.TYPE_FP32
        assert (vectors.name, vectors.data_type, list(vectors.dims)) == ("vectors", vector_type, [SPEC.vector_size])
        (boxes,) = config.output
        assert (boxes.name, boxes.data_type, list(boxes.dims)) == ("boxes", model_config_pb2.TYPE_FP32, [SPEC.output_size])
        dynamic = config.dynamic_batching
        assert list(dynamic.preferred_batch_size) == [8] and dynamic.max_queue_delay_microseconds == 1500
        policy = dynamic.default_queue_policy
        assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
        assert (policy.default_timeout_microseconds, policy.max_queue_size) == (50_000, 16)
        assert served_spec(config, "here", config.name) == SPEC  # quotes, backslash and non-ASCII survive


def test_onnx_only_repository_and_preferred_batch_capped_by_max_batch(tmp_path, artifacts):
    configs = write_triton_repository(tmp_path / "repo", "m", SPEC, artifacts[0], 4)
    assert [path.parent.name for path in configs] == ["m"]
    assert list(parse(configs[0]).dynamic_batching.preferred_batch_size) == [4]
    with pytest.raises(ValueError, match="compute capabilities"):
        write_triton_repository(tmp_path / "repo2", "m", SPEC, artifacts[0], 4, artifacts[1], ())


def test_compute_capability_names():
    assert [compute_capability(t) for t in ("sm75", "sm89", "sm121")] == ["7.5", "8.9", "12.1"]
    with pytest.raises(ValueError):
        compute_capability("current")


def test_config_without_spec_parameter_is_refused():
    text = model_config_text("m", "onnxruntime_onnx", SPEC, 8).split("parameters {")[0]
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    with pytest.raises(BackendError, match="no bbrefinement.spec parameter"):
        served_spec(config, "host:1", "m")
