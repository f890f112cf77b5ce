"""A Triton Inference Server model repository for a refiner: the ONNX model and its TensorRT engine.

Many pipelines can then share one server that batches their calls (dynamic batching) and refuses
work it cannot start in time (a rejecting queue policy) instead of letting latency grow without
bound. The tensors are the engine's own (pipeline.model.export: uint8 "crops", float32 "vectors" in,
float32 "boxes" out) and the RefinerSpec rides in the config's parameters, so a client
(pipeline.backends.triton) knows the preprocessing without a model file.

The configs are written as protobuf text by hand (no tritonclient needed to build); the tests parse
every one with tritonclient's ModelConfig.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import BOXES, CROPS, VECTORS

TRITON_SPEC_KEY = "bbrefinement.spec"  # config parameter holding RefinerSpec.to_json()
ONNX_PLATFORM = "onnxruntime_onnx"
TENSORRT_PLATFORM = "tensorrt_plan"
TENSORRT_SUFFIX = "-trt"  # the engine's model is named after the ONNX one plus this
PLAN_FILE = "model.plan"
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class Batching:
    """Dynamic batching: wait up to `queue_delay_us` to fill a batch; reject requests queued longer
    than `timeout_us` or beyond `max_queue_size` (a saturated server says so at once)."""

    preferred_batch: int = 8
    queue_delay_us: int = 2000
    timeout_us: int = 100_000
    max_queue_size: int = 64


def compute_capability(target: str) -> str:
    """RTX target name -> Triton's cc key: sm86 -> "8.6", sm120 -> "12.0"."""
    digits = target.removeprefix("sm")
    if not digits.isdigit() or len(digits) < 2:
        raise ValueError(f"{target!r} is not a compute capability target like sm86")
    return f"{digits[:-1]}.{digits[-1]}"


def model_config_text(
    name: str,
    platform: str,
    spec: RefinerSpec,
    max_batch: int,
    batching: Batching = Batching(),
    cc_model_filenames: dict[str, str] | None = None,
) -> str:
    """config.pbtxt for one refiner model; `cc_model_filenames` maps "8.6" -> plan file (TensorRT only)."""
    size = spec.input_size
    lines = [
        f"name: {_quoted(name)}",
        f"platform: {_quoted(platform)}",
        f"max_batch_size: {max_batch}",
        "input [",
        f"  {{ name: {_quoted(CROPS)} data_type: TYPE_UINT8 dims: [ {size}, {size}, 3 ] }},",
        f"  {{ name: {_quoted(VECTORS)} data_type: TYPE_FP32 dims: [ {spec.vector_size} ] }}",
        "]",
        "output [",
        f"  {{ name: {_quoted(BOXES)} data_type: TYPE_FP32 dims: [ {spec.output_size} ] }}",
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {min(batching.preferred_batch, max_batch)} ]",
        f"  max_queue_delay_microseconds: {batching.queue_delay_us}",
        "  default_queue_policy {",
        "    timeout_action: REJECT",
        f"    default_timeout_microseconds: {batching.timeout_us}",
        "    allow_timeout_override: true",
        f"    max_queue_size: {batching.max_queue_size}",
        "  }",
        "}",
    ]
    if cc_model_filenames:
        lines += [
            f"cc_model_filenames {{ key: {_quoted(cc)} value: {_quoted(file)} }}" for cc, file in cc_model_filenames.items()
        ]
    lines += [f"parameters {{ key: {_quoted(TRITON_SPEC_KEY)} value {{ string_value: {_quoted(spec.to_json())} }} }}"]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    """A protobuf text-format string literal: JSON's escapes of ASCII text are valid there too."""
    return json.dumps(text, ensure_ascii=True)


def write_triton_repository(
    repository: Path,
    name: str,
    spec: RefinerSpec,
    onnx_path: Path,
    max_batch: int,
    engine_path: Path | None = None,
    engine_targets: tuple[str, ...] = (),
    batching: Batching = Batching(),
) -> list[Path]:
    """Write <repository>/<name>/ (ONNX Runtime) and, given an engine, <name>-trt/ (TensorRT); returns the configs.

    `engine_targets`: the compute capabilities the engine was built for (sm80, ...); one plan file
    serves them all (TensorRT-RTX builds one engine for several), so every cc maps to it.
    """
    onnx_config = model_config_text(name, ONNX_PLATFORM, spec, max_batch, batching)
    written = [_write_model(repository / name, ONNX_FILE, onnx_path, onnx_config)]
    if engine_path is not None:
        if not engine_targets:
            raise ValueError(f"{engine_path} needs the compute capabilities it was built for")
        trt_name = name + TENSORRT_SUFFIX
        files = {compute_capability(target): PLAN_FILE for target in engine_targets}
        config = model_config_text(trt_name, TENSORRT_PLATFORM, spec, max_batch, batching, files)
        written.append(_write_model(repository / trt_name, PLAN_FILE, engine_path, config))
    return written


def _write_model(folder: Path, file_name: str, artifact: Path, config: str) -> Path:
    """<folder>/config.pbtxt and <folder>/1/<file_name> (version 1, a copy of the artifact)."""
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact, version / file_name)
    config_path = folder / "config.pbtxt"
    config_path.write_text(config, encoding="utf-8")
    return config_path
