"""The torch backend: crops already on its device, and the CUDA-graph batch buckets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.backends.torch import TorchBackend, batch_buckets
from pipeline.core.errors import BackendError
from pipeline.model.random_init import random_inputs


def test_torch_backend_takes_tensors_already_on_its_device(small_model):
    """The GPU cropper hands over device tensors; on the CPU the same path runs with CPU tensors."""
    backend = TorchBackend(small_model, "cpu", max_batch=2)
    crops, vectors = random_inputs(small_model.spec, 3, seed=9)  # chunks of 2 and 1
    expected = backend.refine(crops, vectors)
    from_tensors = backend.refine(torch.from_numpy(crops), torch.from_numpy(vectors))
    mixed = backend.refine(torch.from_numpy(crops), vectors)
    np.testing.assert_allclose(from_tensors, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(mixed, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        backend.refine(torch.from_numpy(crops).float(), vectors)
    assert backend.refine(torch.from_numpy(crops[:0]), vectors[:0]).shape == (0, 6)


@pytest.mark.parametrize(
    ("max_batch", "buckets"), [(1, [1]), (8, [1, 2, 4, 8]), (10, [1, 2, 4, 8, 10]), (32, [1, 2, 4, 8, 16, 32])]
)
def test_cuda_graph_buckets_double_up_to_max_batch(max_batch, buckets):
    assert batch_buckets(max_batch) == buckets


def test_cuda_graphs_need_cuda(small_model):
    with pytest.raises(BackendError, match="CUDA graphs need device cuda"):
        TorchBackend(small_model, "cpu", cuda_graphs=True)
