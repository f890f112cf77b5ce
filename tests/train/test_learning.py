"""The refiner learns: a few hundred steps on generated scenes beat the distorted input boxes."""

import numpy as np
import pytest

from pipeline.spec import RefinerSpec
from pipeline.synthetic import CLASS_NAMES, render_scene
from train.augment import AugmentConfig
from train.data import AnnotatedImage
from train.loop import TrainConfig, train


def scenes(seed: int, count: int) -> list[AnnotatedImage]:
    """One textured object per cluttered scene: enough signal to learn from in seconds."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        scene = render_scene(rng, 128, 96, n_objects=1)
        images.append(AnnotatedImage(index, f"{index}.png", scene.image, scene.boxes.astype(np.float64), scene.class_ids))
    return images


@pytest.mark.slow
def test_a_few_hundred_steps_raise_mean_iou_clearly_above_the_input(tmp_path):
    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=CLASS_NAMES)
    config = TrainConfig(
        spec=spec, out=tmp_path / "tiny.safetensors", epochs=15, batch_size=16, boxes_per_image=8,
        optimizer="adamw", learning_rate=3e-3, early_stop_patience=12, val_boxes=200, seed=1,
        augment=AugmentConfig(jitter_min=0.1, jitter_max=0.25),
    )
    best = train(config, scenes(0, 32), scenes(1, 40))  # 15 epochs x 16 steps
    assert best["val_iou_refined"] > best["val_iou_input"] + 0.05, best
    assert best["val_iou_gated"] >= best["val_iou_input"], best
    assert (tmp_path / "tiny.safetensors").is_file() and (tmp_path / "tiny.log.jsonl").is_file()
