"""INT8 refiner ONNX with NNCF: QuantizeLinear/DequantizeLinear pairs on the backbone, calibrated on real crops.

The result is an ordinary ONNX file, so OpenVINO runs it in int8 (VNNI/AMX kernels), ONNX Runtime
runs it, and TensorRT reads its scales instead of calibrating. The heads stay float (FLOAT_SCOPE):
the edges head takes each box side as the expectation of a softmax over 20 positions, and with
8-bit probabilities the sides moved by 3% of the crop on held-in crops (mean IoU with the truth
0.83 -> 0.74); the float heads are a few percent of the time. Quantising is minutes of CPU, so the
result is cached by the checkpoint's content, the settings and the calibration crops.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx

from pipeline.model.artifacts import CROPS, SPEC_KEY, VECTORS, ModelFile, check_onnx_interface
from pipeline.model.export import CACHE_KEEP, ONNX_CACHE_DIR, cached_onnx, prune_cache

# ONNX node-name patterns kept in float: every head after the backbone (export names nodes /model/<module>/...).
FLOAT_SCOPE = (r".*/edges/.*", r".*/quality_head/.*", r".*/box_head/.*", r".*/mixture/.*", r".*/spatial/.*")


@dataclass(frozen=True)
class CalibrationCrops:
    """The refiner's inputs to calibrate on: uint8 NHWC BGR crops and their mixture vectors (pipeline.data.calibration_crops)."""

    crops: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.crops)

    def digest(self) -> str:
        """SHA-256 of both arrays: part of the cache key, so other data makes another model."""
        hasher = hashlib.sha256(np.ascontiguousarray(self.crops).tobytes())
        hasher.update(np.ascontiguousarray(self.vectors).tobytes())
        return hasher.hexdigest()


@dataclass(frozen=True)
class Int8Settings:
    """What NNCF is told; every field is part of the cache key."""

    preset: str = "performance"  # nncf.QuantizationPreset: symmetric activations, the fastest kernels
    fast_bias_correction: bool = False  # full bias correction: box error on held-in crops 0.0026 -> 0.0018 of the crop, minutes longer
    float_scope: tuple[str, ...] = FLOAT_SCOPE

    def digest(self) -> str:
        settings = {**asdict(self), "nncf": version("nncf")}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def quantize_onnx(source: Path, calibration: CalibrationCrops, out: Path, settings: Int8Settings = Int8Settings()) -> Path:
    """Write the INT8 (QDQ) version of the FP32 ONNX `source` to `out`, spec kept in its metadata; atomic, checked."""
    import nncf  # minutes of work and a heavy import: only when quantising

    nncf.set_log_level(logging.WARNING)  # its per-node INFO lines would bury build_engine.py's own report
    model = ModelFile.of(source)
    proto = _without_output_casts(onnx.load(str(model.path)))
    samples = [{CROPS: calibration.crops[i : i + 1], VECTORS: calibration.vectors[i : i + 1]} for i in range(len(calibration))]
    quantized = nncf.quantize(
        proto,
        nncf.Dataset(samples),
        preset=nncf.QuantizationPreset(settings.preset),
        subset_size=len(samples),
        fast_bias_correction=settings.fast_bias_correction,
        ignored_scope=nncf.IgnoredScope(patterns=list(settings.float_scope), validate=False),
    )
    onnx.helper.set_model_props(quantized, {SPEC_KEY: model.spec.to_json()})
    check_onnx_interface(quantized, model.spec, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    onnx.save(quantized, str(temporary))
    temporary.replace(out)
    return out


def cached_int8_onnx(
    checkpoint: ModelFile | Path,
    calibration: CalibrationCrops,
    settings: Int8Settings = Int8Settings(),
    cache_dir: Path | None = None,
) -> Path:
    """INT8 ONNX of a checkpoint, quantised once per checkpoint content, settings and calibration crops.

    Shares the FP32 export cache (engines/cache/<checkpoint sha256>/), and its pruning.
    """
    checkpoint = ModelFile.of(checkpoint)
    cache_dir = Path(cache_dir or ONNX_CACHE_DIR)
    key = hashlib.sha256(f"{settings.digest()}:{calibration.digest()}".encode()).hexdigest()[:16]
    path = cache_dir / checkpoint.sha256[:16] / f"{checkpoint.spec.name}.int8-{key}.onnx"
    if not path.is_file():
        quantize_onnx(cached_onnx(checkpoint, cache_dir), calibration, path, settings)
    path.parent.touch()
    prune_cache(cache_dir, CACHE_KEEP)
    return path


def int8_path(fp32_onnx: Path) -> Path:
    """Where build_engine.py writes a model's INT8 ONNX: beside the FP32 one, `<stem>.int8.onnx`."""
    return Path(fp32_onnx).with_suffix(".int8.onnx")


def _without_output_casts(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop casts that write a graph output from a tensor of the same type (the FP32 export's `.float()`).

    NNCF 3.4 removes such no-op casts itself but fails on one that produces a graph output
    (KeyError on the output name); renaming the producer's output removes it without changing results.
    """
    produced_by = {name: node for node in proto.graph.node for name in node.output}
    types = {info.name: info.type.tensor_type.elem_type for info in (*proto.graph.input, *proto.graph.value_info)}
    types.update({tensor.name: tensor.data_type for tensor in proto.graph.initializer})
    inferred = onnx.shape_inference.infer_shapes(proto)
    types.update({info.name: info.type.tensor_type.elem_type for info in inferred.graph.value_info})
    for output in proto.graph.output:
        cast = produced_by.get(output.name)
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in produced_by:
            continue
        target = next(attribute.i for attribute in cast.attribute if attribute.name == "to")
        if types.get(cast.input[0]) != target:
            continue
        producer = produced_by[cast.input[0]]
        producer.output[list(producer.output).index(cast.input[0])] = output.name
        proto.graph.node.remove(cast)
    return proto
