"""Every registered backend keeps one contract: any batch size in order, empty in -> empty out, wrong shapes
refused, FP32 torch's answers within its own tolerance. Parametrised over the registry, so a new
backend is tested by registering it; what is not installed here, or needs CUDA or a server, skips.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.backends import REGISTRY, BackendUnavailable, Registered, RefinerBackend, open_backend
from pipeline.backends.derived import WHAT
from pipeline.backends.torch import TorchBackend
from pipeline.model.random_init import random_inputs

SERVER_NEEDED = "a client of a server: tests/pipeline/backends/test_triton_server.py runs it against one"


@pytest.fixture(scope="module", params=REGISTRY, ids=[entry.name for entry in REGISTRY])
def entry(request) -> Registered:
    return request.param


@pytest.fixture
def open_small(entry, small_checkpoint, private_engine_dirs):
    """Factory: the small refiner behind `entry` with a given max_batch, on the CPU where it runs there."""
    if entry.name == "triton":
        pytest.skip(SERVER_NEEDED)
    device = "cpu" if "cpu" in entry.devices else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"{entry.name} runs on CUDA only and torch sees no GPU")

    def open_one(max_batch: int) -> RefinerBackend:
        try:
            return open_backend(entry.name, small_checkpoint, device, max_batch)
        except BackendUnavailable as error:
            pytest.skip(f"{entry.name} cannot run here: {error}")

    return open_one


def test_registry_line_names_its_class(entry):
    assert entry.backend.startswith(f"pipeline.backends.{entry.name}:")
    try:
        assert entry.backend_class().name == entry.name
    except BackendUnavailable as error:
        pytest.skip(str(error))
    assert set(entry.accepts) <= set(WHAT) and entry.devices


def test_matches_fp32_torch_within_its_tolerance(open_small, small_model):
    backend = open_small(8)
    crops, vectors = random_inputs(small_model.spec, 5, seed=3)
    expected = TorchBackend(small_model, "cpu").refine(crops, vectors)
    actual = backend.refine(crops, vectors)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= backend.parity_tolerance


def test_batches_above_max_batch_are_split_and_kept_in_order(open_small, small_model):
    crops, vectors = random_inputs(small_model.spec, 7, seed=5)
    whole = open_small(8)
    split = open_small(3)  # chunks of 3, 3, 1
    expected = whole.refine(crops, vectors)
    # Other batch sizes may pick other kernels: equal up to the backend's own arithmetic.
    np.testing.assert_allclose(split.refine(crops, vectors), expected, rtol=0, atol=split.parity_tolerance)
    np.testing.assert_allclose(split.refine(crops[::-1], vectors[::-1]), expected[::-1], rtol=0, atol=split.parity_tolerance)


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
