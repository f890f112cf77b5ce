"""The torch cropper feeds the refiner the same pixels as the CPU cropper (runs on CPU tensors too)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.core.geometry import FILL_VALUE, crop_windows
from pipeline.refine.crops import CpuCropper
from pipeline.refine.gpu_crops import GpuCropper

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


def random_windows(rng: np.random.Generator, width: int, height: int, size: int, count: int = 120) -> np.ndarray:
    """Windows inside, across the edge of, and outside the frame; down- and upscaled; plus exact 1x/2x/3x."""
    x1 = rng.integers(-width // 3, width, count)
    y1 = rng.integers(-height // 3, height, count)
    sides = rng.integers(1, 2 * max(width, height), (count, 2))
    fixed = [[0, 0, size, size], [3, 2, 3 + 2 * size, 2 + 2 * size], [1, 1, 1 + 3 * size, 1 + 3 * size], [-5, -5, 7, 9]]
    return np.concatenate([np.stack([x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]], axis=1), fixed]).astype(np.int64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [32, 64])
def test_matches_cpu_crops_within_one_grey_level(device, size):
    rng = np.random.default_rng(size)
    frame = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)  # noise: every sampling error shows
    windows = random_windows(rng, 131, 97, size)
    expected = CpuCropper(size).crop(frame, windows)
    crops = GpuCropper(size, device).crop(frame, windows)
    assert crops.dtype == torch.uint8 and crops.device.type == device and crops.shape == expected.shape
    difference = np.abs(crops.cpu().numpy().astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.1  # only cv2's fixed-point rounding differs


@pytest.mark.parametrize("device", DEVICES)
def test_matches_cpu_on_a_large_frame_with_paper_padding(device):
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 50, 120], [1200, 600, 1280, 720], [300.4, 200.7, 700.2, 650.9], [640, 10, 660, 30]])
    windows = crop_windows(boxes, 0.15)
    expected = CpuCropper(96).crop(frame, windows)
    crops = GpuCropper(96, device).crop(torch.from_numpy(frame).to(device), windows)  # an uploaded frame works too
    assert np.abs(crops.cpu().numpy().astype(np.int16) - expected.astype(np.int16)).max() <= 1


def test_window_outside_the_frame_is_fill_and_empty_input_is_empty():
    frame = np.full((20, 30, 3), 200, np.uint8)
    cropper = GpuCropper(8, "cpu")
    assert (cropper.crop(frame, np.array([[100, 100, 120, 110]])) == FILL_VALUE).all()
    assert cropper.crop(frame, np.zeros((0, 4), np.int64)).shape == (0, 8, 8, 3)

