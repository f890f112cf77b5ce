import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.geometry import (
    box_iou_matrix,
    box_iou_pairs,
    crop_windows,
    decode,
    encode,
    match_boxes,
    mixture_vectors,
    usable_boxes,
)

coordinate = st.floats(-5000, 5000, allow_nan=False)
side = st.floats(0.01, 8000, allow_nan=False)


@st.composite
def boxes(draw, count=st.integers(1, 8)):
    n = draw(count)
    x = np.array([draw(coordinate) for _ in range(n)])
    y = np.array([draw(coordinate) for _ in range(n)])
    w = np.array([draw(side) for _ in range(n)])
    h = np.array([draw(side) for _ in range(n)])
    return np.stack([x, y, x + w, y + h], axis=1)


@settings(max_examples=200, deadline=None)
@given(boxes(), st.floats(0, 1))
def test_window_contains_box_and_round_trips(box_array, padding):
    windows = crop_windows(box_array, padding)
    assert windows.dtype == np.int64
    assert (windows[:, :2] <= np.floor(box_array[:, :2])).all()
    assert (windows[:, 2:] >= np.ceil(box_array[:, 2:])).all()
    local = encode(box_array, windows)
    assert (local >= -1e-9).all() and (local <= 1 + 1e-9).all()
    np.testing.assert_allclose(decode(local, windows), box_array, rtol=0, atol=1e-6 * (1 + np.abs(box_array).max()))


@settings(max_examples=100, deadline=None)
@given(boxes(), st.lists(st.floats(0, 0.5), min_size=4, max_size=4))
def test_per_side_padding_grows_each_side_by_its_own_fraction(box_array, sides):
    windows = crop_windows(box_array, np.array([sides]))
    width = box_array[:, 2] - box_array[:, 0]
    height = box_array[:, 3] - box_array[:, 1]
    assert (windows[:, 0] <= box_array[:, 0] - sides[0] * width + 1e-6).all()
    assert (windows[:, 3] >= box_array[:, 3] + sides[3] * height - 1e-6).all()


def test_sub_pixel_box_gets_a_one_pixel_window():
    windows = crop_windows(np.array([[10.2, 10.2, 10.3, 10.3]]), 0.0)
    assert (windows[:, 2:] - windows[:, :2] >= 1).all()


def test_usable_boxes_filters_what_cannot_be_refined():
    frame_w, frame_h = 100, 50
    candidates = np.array([
        [10, 10, 20, 20],      # fine
        [-30, -30, -10, -10],  # wholly outside
        [90, 40, 130, 80],     # partly outside: still refined
        [5, 5, 5, 9],          # zero width
        [np.nan, 1, 2, 3],     # NaN
        [0, 0, np.inf, 3],     # infinite
    ])
    assert usable_boxes(candidates, frame_w, frame_h).tolist() == [True, False, True, False, False, False]
    assert usable_boxes(np.zeros((0, 4)), frame_w, frame_h).shape == (0,)


def test_mixture_vector_is_one_hot_then_centre_and_size():
    box = np.array([[10.0, 20.0, 30.0, 60.0]])
    window = np.array([[0, 0, 40, 80]])
    vector = mixture_vectors(np.array([1]), box, window, num_classes=3)
    np.testing.assert_allclose(vector, [[0, 1, 0, 0.5, 0.5, 0.5, 0.5]])
    unknown = mixture_vectors(np.array([7]), box, window, num_classes=3)
    assert unknown[0, :3].sum() == 0
    # Off-centre and not square in window units: a swapped centre or width/height cannot pass.
    off = mixture_vectors(np.array([2]), np.array([[4.0, 8.0, 20.0, 32.0]]), np.array([[0, 0, 40, 80]]), num_classes=3)
    np.testing.assert_allclose(off, [[0, 0, 1, 0.3, 0.25, 0.4, 0.3]], atol=1e-6)


def test_pairwise_iou_matches_torchvision():
    import torch
    from torchvision.ops import box_iou

    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 100, (20, 2, 2)), axis=1).transpose(0, 2, 1).reshape(20, 4)[:, [0, 2, 1, 3]]
    b = a + rng.normal(0, 5, a.shape)
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
    expected = box_iou(torch.tensor(a), torch.tensor(b)).diagonal().numpy()
    np.testing.assert_allclose(box_iou_pairs(a, b), expected, atol=1e-9)


def test_xywh_to_xyxy_is_a_new_float_array_and_keeps_empty_input_empty():
    from pipeline.core.geometry import xywh_to_xyxy

    source = [[10, 20, 5, 8]]
    np.testing.assert_array_equal(xywh_to_xyxy(source), [[10.0, 20.0, 15.0, 28.0]])
    assert source == [[10, 20, 5, 8]] and xywh_to_xyxy([]).shape == (0, 4)


def test_match_boxes_pairs_each_box_once_best_first():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]], dtype=float)
    b = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], dtype=float)
    first, second, ious = match_boxes(a, b)
    assert first.tolist() == [0] and second.tolist() == [0] and ious.tolist() == [1.0]
    assert box_iou_matrix(a, b).shape == (3, 2)
    assert [len(part) for part in match_boxes(a, np.zeros((0, 4)))] == [0, 0, 0]
