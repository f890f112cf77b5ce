"""Any batch size goes in: split above max_batch in order, empty in -> empty out, wrong shapes refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.backends.build import ONNX_TOLERANCE
from pipeline.backends.onnxruntime import OnnxRuntimeBackend
from pipeline.backends.torch import TorchBackend, batch_buckets
from pipeline.core.errors import BackendError
from pipeline.model.random_init import random_inputs


@pytest.fixture(params=["torch", "onnxruntime"])
def open_small(request, small_model, small_onnx):
    """Factory: the small refiner on the CPU behind either backend, with a given max_batch."""
    if request.param == "torch":
        return lambda max_batch: TorchBackend(small_model, "cpu", max_batch)
    return lambda max_batch: OnnxRuntimeBackend(small_onnx, "cpu", max_batch)


def test_batches_above_max_batch_are_split_and_kept_in_order(open_small, small_model):
    crops, vectors = random_inputs(small_model.spec, 7, seed=5)
    whole = open_small(8).refine(crops, vectors)
    split = open_small(3).refine(crops, vectors)  # chunks of 3, 3, 1
    # Other batch sizes may pick other convolution kernels: equal up to float32 summation order.
    np.testing.assert_allclose(split, whole, rtol=0, atol=ONNX_TOLERANCE)
    reversed_order = open_small(3).refine(crops[::-1], vectors[::-1])
    np.testing.assert_allclose(reversed_order, whole[::-1], rtol=0, atol=ONNX_TOLERANCE)


def test_empty_batch_returns_empty_boxes(open_small, small_model):
    crops, vectors = random_inputs(small_model.spec, 0)
    boxes = open_small(4).refine(crops, vectors)
    assert boxes.shape == (0, small_model.spec.output_size) and boxes.dtype == np.float32


def test_wrong_inputs_are_refused_with_the_expected_shape(open_small, small_model):
    backend = open_small(4)
    crops, vectors = random_inputs(small_model.spec, 2)
    with pytest.raises(ValueError, match=r"uint8 \(N, 128, 128, 3\)"):
        backend.refine(crops.astype(np.float32), vectors)
    with pytest.raises(ValueError, match=r"vectors must be \(2, 6\)"):
        backend.refine(crops, vectors[:, :3])


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
