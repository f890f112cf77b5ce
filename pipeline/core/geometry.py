"""Crop geometry shared by training, every cropper, every backend and the tests.

Coordinates are continuous pixel-edge coordinates, boxes are (x1, y1, x2, y2) with x2 > x1.
A *window* is a detection grown by a padding fraction of its width/height on each side, then
snapped outwards to whole pixels so a CPU cropper can slice the frame and resize it (no warp),
with constant fill only where the window leaves the frame. The refiner sees that window resized
to S x S and answers in *window coordinates*: 0 is the window's left/top edge, 1 its right/bottom.

Box arrays arrive here already checked (`Detections` holds float64 (N, 4) xyxy; training builds
its own float64 boxes), so these functions compute and do not convert or re-check; the format
conversions (`xywh_to_xyxy`, `xyxy_to_xywh`) are the entries for boxes read from files.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.errors import GeometryError

FILL_VALUE = 0  # grey level written where a window leaves the frame
MAX_WINDOW_SIDE = 1 << 15  # a window bigger than this is a corrupt box, not an object


def as_boxes(boxes: np.ndarray | list) -> np.ndarray:
    """Return boxes as a float64 (N, 4) array, raising GeometryError on a wrong shape."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise GeometryError(f"boxes must be an (N, 4) array of x1, y1, x2, y2; got shape {array.shape}")
    return array


def xywh_to_xyxy(boxes: np.ndarray | list) -> np.ndarray:
    """COCO's x, y, width, height (N, 4) -> x1, y1, x2, y2 as a new float64 array (boxes read from files)."""
    array = as_boxes(boxes).copy()
    array[:, 2:] += array[:, :2]
    return array


def xyxy_to_xywh(box: np.ndarray | list) -> list[float]:
    """One x1, y1, x2, y2 box -> COCO's [x, y, width, height] as Python floats (boxes written to COCO results)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def longer_sides(boxes: np.ndarray) -> np.ndarray:
    """Longer side (px) of each xyxy box: what a calibration's max_box_side compares."""
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def usable_boxes(boxes: np.ndarray, frame_width: int, frame_height: int) -> np.ndarray:
    """Mask of boxes that can be refined: finite, positive size, overlapping the frame, sane size.

    The pipeline refines only these and passes the others through untouched, so one bad
    detection never stops a stream.
    """
    finite = np.isfinite(boxes).all(axis=1)
    safe = np.where(finite[:, None], boxes, 0.0)
    width, height = safe[:, 2] - safe[:, 0], safe[:, 3] - safe[:, 1]
    positive = (width > 0) & (height > 0)
    sane = (width < MAX_WINDOW_SIDE) & (height < MAX_WINDOW_SIDE)
    overlaps = (safe[:, 2] > 0) & (safe[:, 3] > 0) & (safe[:, 0] < frame_width) & (safe[:, 1] < frame_height)
    return finite & positive & sane & overlaps


def crop_windows(boxes: np.ndarray, padding: float | np.ndarray) -> np.ndarray:
    """Integer windows (N, 4) around boxes, grown by padding fractions and snapped outwards.

    `padding` is one fraction for all sides (inference) or an (N, 4) array of per-side fractions
    (left, top, right, bottom) as training draws them. `boxes` must be usable (`usable_boxes`):
    the refiner selects only those, training makes only those.
    """
    pad = np.broadcast_to(np.asarray(padding, dtype=np.float64), boxes.shape)
    if (pad < 0).any() or not np.isfinite(pad).all():
        raise GeometryError("padding fractions must be finite and non-negative")
    width = (boxes[:, 2] - boxes[:, 0])[:, None]
    height = (boxes[:, 3] - boxes[:, 1])[:, None]
    grow = pad * np.concatenate([width, height, width, height], axis=1)
    grown = boxes + grow * np.array([-1.0, -1.0, 1.0, 1.0])
    windows = np.concatenate([np.floor(grown[:, :2]), np.ceil(grown[:, 2:])], axis=1)
    # A sub-pixel box still gets a window of at least one pixel.
    windows[:, 2:] = np.maximum(windows[:, 2:], windows[:, :2] + 1)
    return windows.astype(np.int64)


def _origin_and_scale(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    windows = np.asarray(windows, dtype=np.float64)
    origin = np.concatenate([windows[:, :2], windows[:, :2]], axis=1)
    size = windows[:, 2:] - windows[:, :2]
    return origin, np.concatenate([size, size], axis=1)


def encode(boxes: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Frame boxes -> window coordinates (0..1 inside the window)."""
    origin, scale = _origin_and_scale(windows)
    return (boxes - origin) / scale


def decode(window_boxes: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Window coordinates (the refiner's sigmoid outputs) -> frame boxes."""
    origin, scale = _origin_and_scale(windows)
    return window_boxes * scale + origin


def mixture_vectors(class_ids: np.ndarray, boxes: np.ndarray, windows: np.ndarray, num_classes: int) -> np.ndarray:
    """The paper's mixture data: one-hot class, then the detection's centre and size in the window.

    Float32 (N, num_classes + 4). Class ids outside 0..num_classes-1 get an all-zero one-hot, so
    an unknown class degrades to the naive refiner instead of failing.
    """
    class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    local = encode(boxes, windows)
    vectors = np.zeros((len(local), num_classes + 4), dtype=np.float32)
    known = (class_ids >= 0) & (class_ids < num_classes)
    vectors[np.flatnonzero(known), class_ids[known]] = 1.0
    vectors[:, num_classes] = (local[:, 0] + local[:, 2]) / 2
    vectors[:, num_classes + 1] = (local[:, 1] + local[:, 3]) / 2
    vectors[:, num_classes + 2] = local[:, 2] - local[:, 0]
    vectors[:, num_classes + 3] = local[:, 3] - local[:, 1]
    return vectors


def box_iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a[i] with b[i] (not the full matrix), for evaluation and quality targets."""
    top_left = np.maximum(a[:, :2], b[:, :2])
    bottom_right = np.minimum(a[:, 2:], b[:, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a + area_b - intersection
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every a[i] with every b[j], shape (len(a), len(b))."""
    a, b = as_boxes(a), as_boxes(b)
    return box_iou_pairs(np.repeat(a, len(b), axis=0), np.tile(b, (len(a), 1))).reshape(len(a), len(b))


def match_boxes(a: np.ndarray, b: np.ndarray, min_iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy one-to-one matching, highest IoU first, of pairs above `min_iou`: indices into a, into b, and their IoUs.

    Enough to compare two detectors' boxes on one frame (the same network at another precision or
    runtime), where matches are unambiguous; not an evaluation protocol.
    """
    ious = box_iou_matrix(a, b)
    rows, cols = np.nonzero(ious > min_iou)
    used_a, used_b, pairs = set(), set(), []
    for index in np.argsort(-ious[rows, cols], kind="stable"):
        i, j = int(rows[index]), int(cols[index])
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((i, j))
    first = np.array([i for i, _ in pairs], dtype=np.int64)
    second = np.array([j for _, j in pairs], dtype=np.int64)
    return first, second, ious[first, second]
