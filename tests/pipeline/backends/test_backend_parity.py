"""ONNX Runtime and torch agree (FP32, 1e-4) on every paper backbone at its native size, at batch 1 and 8."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline.backends.build import ONNX_TOLERANCE
from pipeline.backends.onnxruntime import OnnxRuntimeBackend
from pipeline.backends.torch import TorchBackend
from pipeline.core.spec import PAPER_BACKBONES, paper_spec
from pipeline.model.artifacts import ModelFile
from pipeline.model.export import export_onnx
from pipeline.model.random_init import random_inputs, random_refiner


@pytest.fixture(scope="module", params=list(PAPER_BACKBONES))
def exported(request, tmp_path_factory):
    """One random-init model and its ONNX per backbone, shared by both batch sizes."""
    spec = paper_spec(request.param, ("person", "car"))
    model = random_refiner(spec)
    return model, export_onnx(model, tmp_path_factory.mktemp(request.param) / f"{spec.name}.onnx", max_batch=8)


@pytest.mark.parametrize("batch", [1, 8])
def test_onnxruntime_matches_torch(exported, batch):
    model, onnx_path = exported
    crops, vectors = random_inputs(model.spec, batch, seed=batch)
    expected = TorchBackend(model, "cpu").refine(crops, vectors)
    actual = OnnxRuntimeBackend(ModelFile(onnx_path, model.spec), "cpu", threads=os.cpu_count()).refine(crops, vectors)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ONNX_TOLERANCE)
    if batch > 1:  # the outputs move with the input, so agreeing on them means something
        assert expected.std(axis=0).min() > 1e-3


@pytest.mark.parametrize("head", ["spatial", "edges"])
def test_spatial_heads_export_and_match_torch(tmp_path, head):
    """The spatial head's flatten and the edges head's softmax over positions keep a dynamic batch through ONNX."""
    spec = paper_spec("b0", ("person",), input_size=128, head=head)
    model = random_refiner(spec)
    onnx_path = export_onnx(model, tmp_path / f"{spec.name}.onnx", max_batch=8)
    for batch in (1, 5):
        crops, vectors = random_inputs(spec, batch, seed=batch)
        expected = TorchBackend(model, "cpu").refine(crops, vectors)
        actual = OnnxRuntimeBackend(ModelFile(onnx_path, model.spec), "cpu", threads=os.cpu_count()).refine(crops, vectors)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=ONNX_TOLERANCE)
