"""The training loop's bookkeeping: resuming continues the same run, its log and its clock."""

import json
from pathlib import Path

import pytest

from pipeline.core.errors import UsageError
from pipeline.core.spec import RefinerSpec
from pipeline.model.checkpoint import load_refiner
from tests.train.test_learning import flat_scenes
from train.loop import TrainConfig, train, warm_start

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


def test_init_starts_from_given_weights_and_refuses_another_spec(tmp_path: Path):
    import torch

    from pipeline.model.checkpoint import save_refiner
    from pipeline.model.net import RefinerNet

    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=32, class_names=("box",))
    torch.manual_seed(3)
    start = save_refiner(RefinerNet(spec), tmp_path / "start.safetensors")
    images = flat_scenes(0, 8)
    # Learning rate 0: training moves no weight, so the saved model's head is the --init model's head.
    config = TrainConfig(spec=spec, out=tmp_path / "warm.safetensors", epochs=1, batch_size=8, optimizer="adamw",
                         learning_rate=0.0, val_boxes=8, init=start)
    train(config, images, images)
    warm, initial = load_refiner(tmp_path / "warm.safetensors"), load_refiner(start)
    assert torch.equal(warm.box_head.weight, initial.box_head.weight)
    other = RefinerSpec(backbone="mobilenetv3_small_075", input_size=32, class_names=("box",))
    with pytest.raises(UsageError, match="another spec"):
        TrainConfig(spec=other, out=tmp_path / "x.safetensors", epochs=1, init=start)


def test_init_from_another_head_copies_the_shared_weights(tmp_path: Path):
    """A spatial model warm-starts an edges model: backbone, mixture and quality head copied, the box head new."""
    import torch

    from pipeline.model.checkpoint import save_refiner
    from pipeline.model.net import RefinerNet

    spatial = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("box",), head="spatial")
    torch.manual_seed(3)
    start = save_refiner(RefinerNet(spatial), tmp_path / "start.safetensors")
    images = flat_scenes(0, 8)
    edges = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("box",), head="edges")
    config = TrainConfig(spec=edges, out=tmp_path / "edges.safetensors", epochs=1, batch_size=8, optimizer="adamw",
                         learning_rate=0.0, val_boxes=8, init=start)
    train(config, images, images)
    warm, initial = load_refiner(tmp_path / "edges.safetensors"), load_refiner(start)
    assert warm.spec.head == "edges"
    for name in ("backbone.conv_stem.weight", "spatial.embed.1.weight", "quality_head.weight"):
        assert torch.equal(warm.state_dict()[name], initial.state_dict()[name]), name
    other_backbone = RefinerSpec(backbone="mobilenetv3_small_075", input_size=64, class_names=("box",), head="edges")
    with pytest.raises(UsageError, match="another spec"):
        TrainConfig(spec=other_backbone, out=tmp_path / "x.safetensors", epochs=1, init=start)


def test_init_with_more_classes_starts_each_class_as_the_old_refiner(tmp_path: Path):
    """A one-class refiner warm-starts a three-class one: every class, old or new, gives its outputs at first."""
    import torch

    from pipeline.model.checkpoint import save_refiner
    from pipeline.model.net import RefinerNet

    one = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("box",), head="edges")
    torch.manual_seed(3)
    start = save_refiner(RefinerNet(one), tmp_path / "start.safetensors")
    three = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("ball", "box", "cup"), head="edges")
    warm, initial = RefinerNet(three).eval(), load_refiner(start)
    warm_start(warm, initial, start)
    crops = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    geometry = torch.tensor([[0.5, 0.5, 0.7, 0.7], [0.4, 0.6, 0.5, 0.8]])
    with torch.no_grad():
        expected = initial(crops, torch.cat([torch.ones(2, 1), geometry], dim=1))
        for index in range(3):
            one_hot = torch.nn.functional.one_hot(torch.full((2,), index), 3).float()
            torch.testing.assert_close(warm(crops, torch.cat([one_hot, geometry], dim=1)), expected)


def test_init_with_another_padding_and_size_keeps_the_backbone(tmp_path: Path):
    """Convolutions do not depend on the crop size, so a refiner can be fine-tuned to a new window."""
    import torch

    from pipeline.model.checkpoint import save_refiner
    from pipeline.model.net import RefinerNet

    torch.manual_seed(3)
    start = save_refiner(RefinerNet(RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("box",),
                                                head="spatial")), tmp_path / "start.safetensors")
    wider = RefinerSpec(backbone="mobilenetv3_small_050", input_size=96, class_names=("box",), padding=0.25, head="spatial")
    config = TrainConfig(spec=wider, out=tmp_path / "wide.safetensors", epochs=1, batch_size=8, optimizer="adamw",
                         learning_rate=0.0, val_boxes=8, init=start)
    images = flat_scenes(0, 8)
    train(config, images, images)
    warm, initial = load_refiner(tmp_path / "wide.safetensors"), load_refiner(start)
    assert warm.spec == wider
    assert torch.equal(warm.state_dict()["backbone.conv_stem.weight"], initial.state_dict()["backbone.conv_stem.weight"])
    assert warm.state_dict()["spatial.embed.1.weight"].shape != initial.state_dict()["spatial.embed.1.weight"].shape


@pytest.mark.parametrize(("options", "message"), [
    ({"epochs": 0}, "--epochs must be at least 1"),
    ({"batch_size": 0}, "--batch-size must be at least 1"),
    ({"optimizer": "sgd"}, "choose --loss from"),
    ({"real_box_share": 1.5}, "--real-box-share must lie in 0..1"),
    ({"spec": RefinerSpec(backbone="no_such_backbone_v9", input_size=32, class_names=("box",))}, "cannot build a"),
    ({"pretrained": True, "spec": RefinerSpec(backbone="mobilenetv3_small_050", input_size=32, class_names=("box",))},
     "no installed ImageNet weights are known"),
])
def test_a_config_that_cannot_train_is_refused_when_made(tmp_path: Path, options: dict, message: str):
    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=32, class_names=("box",))
    with pytest.raises(UsageError, match=message):
        TrainConfig(**{"spec": spec, "out": tmp_path / "r.safetensors", **options})
    assert not (tmp_path / "r.safetensors").exists()


def test_fewer_samples_than_a_batch_is_refused_before_any_work(tmp_path: Path):
    config = TrainConfig(spec=RefinerSpec(backbone="mobilenetv3_small_050", input_size=32, class_names=("box",)),
                         out=tmp_path / "r.safetensors", batch_size=64)
    with pytest.raises(UsageError, match="less than one batch"):
        train(config, flat_scenes(0, 8), flat_scenes(0, 8))
    assert not (tmp_path / "r.safetensors").exists()
