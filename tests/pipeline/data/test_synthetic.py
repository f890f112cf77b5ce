"""The synthetic generator's promises: deterministic, exact boxes, valid COCO/YOLO/mp4 output."""

from __future__ import annotations

import contextlib
import io
import json
from itertools import combinations

import cv2
import numpy as np
import pytest

from pipeline.data import synthetic
from pipeline.data.synthetic import CLASS_NAMES, SceneObject, draw_object, render_scene


def _scenes(count: int, seed: int = 0, width: int = 320, height: int = 240) -> list[synthetic.Scene]:
    rng = np.random.default_rng(seed)
    return [render_scene(rng, width, height) for _ in range(count)]


def test_same_seed_gives_identical_scenes() -> None:
    first, second = _scenes(3, seed=7), _scenes(3, seed=7)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
    assert not np.array_equal(first[0].image, _scenes(1, seed=8)[0].image)


@pytest.mark.parametrize("class_id", range(len(CLASS_NAMES)))
@pytest.mark.parametrize(("cx", "cy", "radius", "angle"), [(40.0, 40.0, 6.0, 0.0), (61.37, 52.81, 17.3, 0.4), (70.5, 69.9, 44.2, 2.0)])
def test_box_is_the_exact_extent_of_the_drawn_pixels(class_id: int, cx: float, cy: float, radius: float, angle: float) -> None:
    image = np.zeros((140, 150, 3), np.uint8)
    texture = np.full((120, 120, 3), 255, np.uint8)
    box = draw_object(image, SceneObject(class_id, cx, cy, radius, angle, texture))
    ys, xs = np.nonzero(image.any(axis=2))
    assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # The shape is where it was asked to be: inside its circumscribed circle, and not a sliver.
    assert cx - radius - 1 <= box[0] and box[2] <= cx + radius + 1
    assert cy - radius - 1 <= box[1] and box[3] <= cy + radius + 1
    assert min(box[2] - box[0], box[3] - box[1]) >= radius


def test_object_outside_the_frame_is_refused() -> None:
    texture = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match="leaves the frame"):
        draw_object(np.zeros((50, 50, 3), np.uint8), SceneObject(0, 3.0, 25.0, 10.0, 0.0, texture))


def test_scene_boxes_are_inside_the_frame_and_well_formed() -> None:
    for scene in _scenes(20, width=400, height=224):
        assert scene.image.shape == (224, 400, 3) and scene.image.dtype == np.uint8
        assert scene.boxes.dtype == np.float32 and scene.class_ids.dtype == np.int64
        assert len(scene.boxes) >= 3
        assert (scene.boxes[:, :2] >= 0).all() and (scene.boxes[:, 2] <= 400).all() and (scene.boxes[:, 3] <= 224).all()
        assert (scene.boxes[:, 2:] > scene.boxes[:, :2]).all()
        assert set(scene.class_ids.tolist()) <= set(range(len(CLASS_NAMES)))


def test_object_count_and_scale_range() -> None:
    rng = np.random.default_rng(1)
    assert len(render_scene(rng, 320, 240, n_objects=5).boxes) == 5
    sides = np.concatenate([np.maximum(s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1]) for s in _scenes(30)])
    assert sides.min() < 20 and sides.max() > 0.25 * 240


def _iou_matrix(boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area[:, None] + area[None, :] - inter)


def test_same_class_objects_often_overlap() -> None:
    """The paper's hard case must be common, not accidental."""
    scenes_with_overlap = 0
    for scene in _scenes(20):
        iou = _iou_matrix(scene.boxes)
        pairs = [(i, j) for i, j in combinations(range(len(scene.boxes)), 2) if scene.class_ids[i] == scene.class_ids[j]]
        scenes_with_overlap += any(iou[i, j] > 0.05 for i, j in pairs)
    assert scenes_with_overlap >= 10


def _evaluate(gt_path, detections: list[dict]) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


def test_coco_dataset_is_valid_and_ground_truth_scores_ap_one(tmp_path) -> None:
    path = synthetic.write_coco_dataset(tmp_path, n_images=6, width=256, height=192, seed=3)
    coco = json.loads(path.read_text())
    assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES)
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
    assert len(coco["images"]) == 6
    for image in coco["images"]:
        assert cv2.imread(str(tmp_path / "images" / image["file_name"])).shape == (192, 256, 3)
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0} for a in coco["annotations"]]
    assert _evaluate(path, detections) == pytest.approx(1.0)


def test_yolo_labels_match_the_coco_boxes(tmp_path) -> None:
    path = synthetic.write_coco_dataset(tmp_path, n_images=2, width=200, height=100, seed=4)
    labels_dir = synthetic.write_yolo_labels(tmp_path)
    coco = json.loads(path.read_text())
    first = [a for a in coco["annotations"] if a["image_id"] == 0]
    rows = np.loadtxt(labels_dir / "000000.txt", ndmin=2)
    x, y, w, h = first[0]["bbox"]
    np.testing.assert_allclose(rows[0], [first[0]["category_id"] - 1, (x + w / 2) / 200, (y + h / 2) / 100, w / 200, h / 100], atol=1e-6)
    assert len(rows) == len(first)
    data_yaml = synthetic.write_yolo_data_yaml(tmp_path / "data.yaml", tmp_path, tmp_path).read_text()
    assert f"train: {(tmp_path / 'images').resolve()}" in data_yaml and "2: triangle" in data_yaml


def test_clip_frames_move_smoothly_over_a_fixed_background() -> None:
    frames = list(synthetic.generate_clip(12, 320, 180, seed=5, n_objects=4))
    assert len(frames) == 12 and all(len(f.boxes) == 4 for f in frames)
    # Objects are sorted by size in every frame, so rows correspond frame to frame.
    steps = np.abs(np.diff(np.stack([f.boxes for f in frames]), axis=0))
    assert steps.max() < 0.05 * 320
    assert not np.array_equal(frames[0].boxes, frames[-1].boxes)
    corner_patch = [f.image[:4, :4] for f in frames]  # unlikely to be covered in every frame
    assert any(np.array_equal(corner_patch[0], patch) for patch in corner_patch[1:])


def test_tracked_clip_has_standing_objects_stable_ids_and_is_generate_clip_without_them() -> None:
    tracked = list(synthetic.generate_tracked_clip(15, 320, 180, seed=5, n_objects=6, standing=0.5, slow=0.2))
    ids = [ids.tolist() for _, ids in tracked]
    assert all(row == ids[0] for row in ids) and sorted(ids[0]) == list(range(6))
    boxes = np.stack([scene.boxes for scene, _ in tracked])
    still = (boxes == boxes[0]).all(axis=(0, 2))
    assert still.sum() >= 3 and not still.all()  # the three standing ones (a slow one may not cross a pixel)
    plain = list(synthetic.generate_clip(15, 320, 180, seed=5, n_objects=6))
    again = [scene for scene, _ in synthetic.generate_tracked_clip(15, 320, 180, seed=5, n_objects=6)]
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes) for a, b in zip(plain, again, strict=True))


def test_write_clip_gives_a_readable_mp4_and_frame_indexed_ground_truth(tmp_path) -> None:
    json_path = synthetic.write_clip(tmp_path / "clip.mp4", n_frames=15, width=160, height=96, seed=6, n_objects=3)
    capture = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (96, 160, 3)
        frames += 1
    capture.release()
    assert frames == 15
    coco = json.loads(json_path.read_text())
    assert [image["id"] for image in coco["images"]] == list(range(15))
    assert len(coco["annotations"]) == 15 * 3
