"""Torch backend on CUDA: FP16 close to the FP32 CPU reference, CUDA graphs equal to eager, device tensors accepted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.backends.tensorrt import ENGINE_TOLERANCE
from pipeline.backends.torch import TorchBackend
from pipeline.core.spec import paper_spec
from pipeline.model.random_init import random_inputs, random_refiner

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")

SPEC = paper_spec("b0", ("person", "car"))


@pytest.fixture(scope="module")
def reference():
    """FP32 CPU outputs of a random-init B0 on 11 crops, and a factory for CUDA copies of the same model."""
    model = random_refiner(SPEC)
    crops, vectors = random_inputs(SPEC, 11, seed=7)
    expected = TorchBackend(model, "cpu").refine(crops, vectors)
    return crops, vectors, expected, lambda **options: TorchBackend(random_refiner(SPEC), "cuda", max_batch=8, **options)


def test_fp16_on_cuda_stays_close_to_fp32(reference):
    crops, vectors, expected, on_cuda = reference
    backend = on_cuda()
    assert next(backend.model.parameters()).dtype == torch.float16
    assert np.abs(backend.refine(crops, vectors) - expected).max() < ENGINE_TOLERANCE["fp16"]


@pytest.mark.parametrize("count", [1, 3, 8, 11])  # 3 pads to the 4-bucket, 11 splits into 8 + 3
def test_cuda_graphs_replay_what_eager_computes(reference, count):
    crops, vectors, _, on_cuda = reference
    eager = on_cuda().refine(crops[:count], vectors[:count])
    graphed = on_cuda(cuda_graphs=True)
    np.testing.assert_allclose(graphed.refine(crops[:count], vectors[:count]), eager, rtol=0, atol=5e-3)
    np.testing.assert_allclose(graphed.refine(crops[:count], vectors[:count]), eager, rtol=0, atol=5e-3)  # replayed


def test_crops_already_on_the_gpu_are_used_in_place(reference):
    crops, vectors, _, on_cuda = reference
    backend = on_cuda()
    expected = backend.refine(crops, vectors)
    np.testing.assert_allclose(backend.refine(torch.from_numpy(crops).cuda(), vectors), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="are on cpu"):
        backend.refine(torch.from_numpy(crops), vectors)
