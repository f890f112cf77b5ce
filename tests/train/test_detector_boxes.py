"""Real detector boxes in training: matching to the truth, crowd regions, samples that teach only the IoU head."""

import json

import numpy as np
import pytest

from pipeline.core.spec import RefinerSpec
from tests.train.test_learning import flat_scenes
from train.data import load_images, match_detections
from train.loop import RandomBoxes, TrainConfig


def test_detections_match_the_truth_they_overlap_most_and_crowds_drop_theirs():
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=np.float64)
    crowd = np.array([[50, 50, 100, 100]], dtype=np.float64)
    detected = np.array([[1, 0, 10, 10], [21, 1, 31, 11], [200, 200, 210, 210], [60, 60, 70, 70]], dtype=np.float64)
    kept, match, iou = match_detections(detected, truth, crowd)
    assert len(kept) == 3  # the box inside the crowd region is neither right nor wrong: dropped
    np.testing.assert_array_equal(match, [0, 1, -1])
    assert iou[0] == pytest.approx(0.9) and iou[2] == 0


def test_load_images_attaches_a_results_file(tmp_path):
    from pipeline.data.synthetic import write_coco_dataset

    annotations = write_coco_dataset(tmp_path, n_images=3, width=160, height=120, seed=0)
    document = json.loads(annotations.read_text())
    first = document["annotations"][0]
    x, y, w, h = first["bbox"]
    results = [{"image_id": first["image_id"], "category_id": first["category_id"], "bbox": [x + 1, y, w, h], "score": 0.9},
               {"image_id": first["image_id"], "category_id": first["category_id"], "bbox": [0, 0, 2, 2], "score": 0.1}]
    (tmp_path / "det.json").write_text(json.dumps(results))
    images, _ = load_images(annotations, tmp_path / "images", min_size=1.0, detections=tmp_path / "det.json")
    image = next(i for i in images if i.image_id == first["image_id"])
    assert len(image.detected) == 2 and image.detected_iou[0] > 0.8


def test_real_boxes_teach_the_iou_head_only_unless_asked():
    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=32, class_names=("box",))
    images = flat_scenes(0, 4)
    real = []
    for image in images:  # every image gets one real box a little off its first truth
        box = image.boxes[0] + np.array([1.0, 0.0, 1.0, 0.0])
        real.append(type(image)(image.image_id, image.file_name, image.pixels, image.boxes, image.class_ids,
                                box[None], np.array([0]), np.array([0.9])))
    for regression, expected in ((False, 0.0), (True, 1.0)):
        config = TrainConfig(spec=spec, out=None, real_box_share=1.0, real_box_regression=regression)
        samples = [RandomBoxes(real, spec, config)[i] for i in range(4)]
        assert all(float(sample[4]) == expected for sample in samples)
    jittered = RandomBoxes(images, spec, TrainConfig(spec=spec, out=None, real_box_share=1.0))[0]
    assert float(jittered[4]) == 1.0  # images without real boxes always give jittered truth
