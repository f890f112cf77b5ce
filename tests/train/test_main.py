"""`python -m train` refuses what it cannot build in one line, before any training."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from tests.train.test_learning import flat_scenes
from train.__main__ import main


@pytest.fixture
def tiny_coco(tmp_path: Path) -> Path:
    """Eight one-rectangle scenes as a COCO dataset on disk (both splits get some)."""
    (tmp_path / "images").mkdir()
    images, annotations = [], []
    for scene in flat_scenes(0, 8):
        cv2.imwrite(str(tmp_path / "images" / scene.file_name), scene.pixels)
        images.append({"id": scene.image_id, "file_name": scene.file_name, "width": 128, "height": 96})
        x1, y1, x2, y2 = scene.boxes[0].tolist()
        annotations.append({"id": scene.image_id, "image_id": scene.image_id, "category_id": 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "box"}]}))
    return path


@pytest.mark.parametrize(("backbone", "head", "message"), [
    ("resnet18", "edges", "use --head spatial"),
    ("no_such_backbone_v9", "pooled", "no_such_backbone_v9"),
])
def test_a_refiner_that_cannot_be_built_is_a_one_line_error(tiny_coco, tmp_path, capsys, backbone, head, message):
    out = tmp_path / "never.safetensors"
    code = main(["--annotations", str(tiny_coco), "--images", str(tiny_coco.parent / "images"), "--out", str(out),
                 "--backbone", backbone, "--input-size", "64", "--head", head, "--val-fraction", "0.5", "--epochs", "1"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert error.startswith("error: cannot build") and message in error and "\n" not in error


def test_fewer_samples_than_a_batch_is_an_error_not_random_weights(tmp_path, capsys):
    from pipeline.data.synthetic import write_coco_dataset
    from train.__main__ import main

    annotations = write_coco_dataset(tmp_path, n_images=8, width=160, height=120, seed=0)
    code = main(["--annotations", str(annotations), "--images", str(tmp_path / "images"), "--out", str(tmp_path / "r.safetensors"),
                 "--backbone", "mobilenetv3_small_050", "--input-size", "32", "--batch-size", "64", "--val-fraction", "0.5"])
    assert code == 2 and "less than one batch" in capsys.readouterr().err
    assert not (tmp_path / "r.safetensors").exists()


def test_freezing_early_stages_stops_their_gradients():
    from pipeline.model.net import RefinerNet
    from pipeline.core.spec import RefinerSpec
    from train.loop import freeze_early_stages

    net = RefinerNet(RefinerSpec(backbone="mobilenetv3_small_050", input_size=32, class_names=("a",)))
    frozen = freeze_early_stages(net, 2)
    names = [n for n, p in net.backbone.named_parameters() if not p.requires_grad]
    assert frozen == len(names) > 0 and all(n.startswith(("conv_stem", "bn1", "blocks.0.", "blocks.1.")) for n in names)
    assert all(p.requires_grad for n, p in net.backbone.named_parameters() if n.startswith("blocks.2."))
