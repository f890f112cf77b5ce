"""The training loop's bookkeeping: resuming continues the same run, its log and its clock."""

import json
from pathlib import Path

import pytest

from pipeline.checkpoint import load_refiner
from pipeline.spec import RefinerSpec
from tests.train.test_learning import flat_scenes
from train.loop import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_resume_continues_epochs_log_and_minutes(tmp_path: Path):
    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=32, class_names=("box",))
    images = flat_scenes(0, 16)

    def config(epochs: int, resume: bool) -> TrainConfig:
        return TrainConfig(spec=spec, out=tmp_path / "r.safetensors", epochs=epochs, batch_size=8, optimizer="adamw",
                           learning_rate=1e-3, val_boxes=16, resume=resume)

    train(config(1, resume=False), images, images)
    train(config(3, resume=True), images, images)
    records = [json.loads(line) for line in (tmp_path / "r.log.jsonl").read_text().splitlines() if line]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    minutes = [r["minutes"] for r in records]
    assert minutes == sorted(minutes) and minutes[1] > minutes[0]  # the clock carries over the resume
    assert load_refiner(tmp_path / "r.safetensors").spec == spec
