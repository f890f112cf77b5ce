"""INT8 quantisation with a real NNCF run: QDQ on the backbone only, outputs near FP32, spec kept, cached by content."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest

from pipeline.backends.onnxruntime import OnnxRuntimeBackend
from pipeline.model import quantize
from pipeline.model.artifacts import ModelFile, read_spec
from pipeline.model.quantize import FLOAT_SCOPE, CalibrationCrops, Int8Settings, cached_int8_onnx, quantize_onnx
from pipeline.model.random_init import random_inputs

pytestmark = pytest.mark.slow  # NNCF statistics and bias correction: ~20-60 s on the shared 2 cores

CALIBRATION_CROPS = 24


@pytest.fixture(scope="module")
def calibration(small_model) -> CalibrationCrops:
    return CalibrationCrops(*random_inputs(small_model.spec, CALIBRATION_CROPS, seed=11))


@pytest.fixture(scope="module")
def int8_onnx(small_onnx, calibration, tmp_path_factory):
    return quantize_onnx(small_onnx, calibration, tmp_path_factory.mktemp("int8") / "small.int8.onnx")


def test_backbone_convolutions_get_qdq_and_heads_stay_float(int8_onnx, small_model):
    nodes = onnx.load(str(int8_onnx)).graph.node
    quantized_inputs = {name for node in nodes if node.op_type == "DequantizeLinear" for name in node.output}
    convolutions = [node for node in nodes if node.op_type in ("Conv", "Gemm")]
    in_head = [any(re.fullmatch(pattern, node.name) for pattern in FLOAT_SCOPE) for node in convolutions]
    # NNCF leaves squeeze-excitation convolutions (on pooled vectors) float by design
    backbone = [node for node, head in zip(convolutions, in_head) if not head and "/se/" not in node.name]
    heads = [node for node, head in zip(convolutions, in_head) if head]
    assert backbone and heads
    assert all(set(node.input) & quantized_inputs for node in backbone)
    assert not any(set(node.input) & quantized_inputs for node in heads)
    assert read_spec(int8_onnx) == small_model.spec


def test_int8_outputs_stay_close_to_fp32(small_onnx, int8_onnx, small_model):
    crops, vectors = random_inputs(small_model.spec, 8, seed=12)  # not the calibration crops
    full = OnnxRuntimeBackend(ModelFile.of(small_onnx), "cpu").refine(crops, vectors)
    int8 = OnnxRuntimeBackend(ModelFile.of(int8_onnx), "cpu").refine(crops, vectors)
    error = np.abs(int8 - full).mean()
    spread = np.abs(full - full.mean(axis=0)).mean()  # how much the outputs move from one crop to the next
    # A random-init B0 on noise crops is chaotic, so quantisation noise is a fair part of the spread;
    # a wrong graph (lost scales, swapped channels) is off by the whole spread or more.
    assert error < 0.5 * spread, f"int8 error {error:.3f} vs output spread {spread:.3f}"
    assert not np.array_equal(int8, full)  # it really computes in int8


def test_cache_reuses_one_quantisation_per_checkpoint_settings_and_data(small_checkpoint, calibration, tmp_path, monkeypatch):
    calls = []
    real = quantize.quantize_onnx

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(quantize, "quantize_onnx", counted)
    first = cached_int8_onnx(small_checkpoint, calibration, cache_dir=tmp_path)
    again = cached_int8_onnx(small_checkpoint, calibration, cache_dir=tmp_path)
    assert first == again and len(calls) == 1
    assert first.parent.name == ModelFile.of(small_checkpoint).sha256[:16]
    other_data = CalibrationCrops(calibration.crops[::-1].copy(), calibration.vectors[::-1].copy())
    other_settings = Int8Settings(fast_bias_correction=True)
    assert Int8Settings().digest() != other_settings.digest()
    assert other_data.digest() != calibration.digest()
    assert read_spec(first) == ModelFile.of(small_checkpoint).spec
