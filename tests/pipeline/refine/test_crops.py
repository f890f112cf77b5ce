import cv2
import numpy as np
import pytest

from pipeline.core.geometry import FILL_VALUE, crop_windows
from pipeline.refine.crops import CpuCropper, crop_one


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (72, 128, 3), dtype=np.uint8)


def test_inside_window_is_a_plain_resize(frame):
    out = np.empty((32, 32, 3), np.uint8)
    crop_one(frame, np.array([10, 5, 50, 45]), out)
    np.testing.assert_array_equal(out, cv2.resize(frame[5:45, 10:50], (32, 32), interpolation=cv2.INTER_LINEAR))


def test_window_leaving_the_frame_is_filled(frame):
    out = np.empty((16, 16, 3), np.uint8)
    crop_one(frame, np.array([-16, -16, 16, 16]), out)  # top-left quarter is outside
    assert (out[:7, :7] == FILL_VALUE).all()
    np.testing.assert_array_equal(out[9:, 9:], cv2.resize(frame[:16, :16], (8, 8), interpolation=cv2.INTER_LINEAR)[1:, 1:])


def test_window_wholly_outside_is_all_fill(frame):
    out = np.full((8, 8, 3), 7, np.uint8)
    crop_one(frame, np.array([200, 200, 220, 220]), out)
    assert (out == FILL_VALUE).all()


@pytest.mark.parametrize("workers", [1, 3])
def test_pool_gives_the_same_batch_as_one_thread(frame, workers):
    rng = np.random.default_rng(1)
    xy = rng.uniform(-20, 120, (11, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 60, (11, 2))], axis=1)
    windows = crop_windows(boxes, 0.15)
    expected = np.stack([_single(frame, w) for w in windows])
    cropper = CpuCropper(24, workers=workers, capacity=4)  # capacity grows on demand
    np.testing.assert_array_equal(cropper.crop(frame, windows), expected)
    assert cropper.crop(frame, windows[:0]).shape == (0, 24, 24, 3)
    cropper.close()


def _single(frame, window):
    out = np.empty((24, 24, 3), np.uint8)
    crop_one(frame, window, out)
    return out


def test_pool_raises_a_failing_crop_whichever_thread_took_it(frame):
    cropper = CpuCropper(24, workers=2)
    try:
        with pytest.raises(ValueError):
            cropper.crop(frame, np.zeros((6, 3), np.int64))  # three coordinates per window
    finally:
        cropper.close()
