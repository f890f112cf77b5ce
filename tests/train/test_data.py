import numpy as np
import pytest

from train.data import DatasetError, is_validation, load_images


def test_split_is_deterministic_and_near_the_fraction():
    names = [f"{i:012d}.jpg" for i in range(4000)]
    share = np.mean([is_validation(n, 0.15) for n in names])
    assert 0.13 < share < 0.17
    assert [is_validation(n, 0.15) for n in names[:50]] == [is_validation(n, 0.15) for n in names[:50]]


def test_loads_generated_coco_and_skips_tiny_and_crowd(tmp_path):
    import json

    from pipeline.data.synthetic import write_coco_dataset

    annotations = write_coco_dataset(tmp_path, n_images=6, width=160, height=120, seed=0)
    document = json.loads(annotations.read_text())
    document["annotations"][0]["iscrowd"] = 1
    annotations.write_text(json.dumps(document))
    images, names = load_images(annotations, tmp_path / "images", min_size=1.0)
    total = sum(len(image.boxes) for image in images)
    assert total == len(document["annotations"]) - 1 and len(names) == 3
    assert all(image.pixels.ndim == 3 for image in images)


def test_missing_annotations_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="cannot read COCO annotations"):
        load_images(tmp_path / "nope.json", tmp_path)


def test_real_coco_person_loads(coco_person):
    images, names = load_images(coco_person / "annotations" / "instances_person.json", coco_person / "images",
                                split="val", limit=5)
    assert names == ("person",) and len(images) == 5
