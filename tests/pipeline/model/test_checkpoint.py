import pytest
import torch

from pipeline.core.errors import ModelFileError, SpecError
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import read_spec, SPEC_KEY
from pipeline.model.checkpoint import load_refiner, save_refiner
from pipeline.model.net import RefinerNet

SPEC = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("a",))


def test_one_file_is_the_whole_model(tmp_path):
    model = RefinerNet(SPEC).eval()
    path = save_refiner(model, tmp_path / "m.safetensors")
    assert read_spec(path) == SPEC
    loaded = load_refiner(path)
    crops = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    vectors = torch.rand(2, SPEC.vector_size)
    assert torch.equal(loaded(crops, vectors), model(crops, vectors))
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        read_spec(tmp_path / "nope.safetensors")


def test_corrupt_and_truncated_files(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        read_spec(garbage)
    path = save_refiner(RefinerNet(SPEC), tmp_path / "m.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError):
        load_refiner(truncated)


def test_file_without_spec_and_unknown_version(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, str(plain))
    with pytest.raises(ModelFileError, match="holds no refiner spec"):
        read_spec(plain)
    future = tmp_path / "future.safetensors"
    save_file({"w": torch.zeros(1)}, str(future), metadata={SPEC_KEY: SPEC.to_json().replace('"version": 1', '"version": 7')})
    with pytest.raises(SpecError, match="version 7"):
        read_spec(future)


def test_weights_of_another_spec_are_refused(tmp_path):
    path = save_refiner(RefinerNet(SPEC), tmp_path / "m.safetensors")
    from safetensors.torch import load_file, save_file

    other = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("a", "b", "c"))
    swapped = tmp_path / "swapped.safetensors"
    save_file(load_file(str(path)), str(swapped), metadata={SPEC_KEY: other.to_json()})
    with pytest.raises(ModelFileError, match="does not match its own spec"):
        load_refiner(swapped)


def test_replace_spec_rewrites_calibration_but_not_the_network(tmp_path):
    from dataclasses import replace

    from pipeline.core.calibration import Calibration
    from pipeline.model.checkpoint import replace_spec

    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=32, class_names=("person",))
    path = save_refiner(RefinerNet(spec), tmp_path / "r.safetensors")
    before = load_refiner(path).state_dict()
    replace_spec(path, replace(spec, profiles={"yolov8n": Calibration(score_power=1.0)}))
    assert read_spec(path).profiles == {"yolov8n": Calibration(score_power=1.0)}
    after = load_refiner(path).state_dict()
    assert all((before[k] == after[k]).all() for k in before)
    with pytest.raises(ModelFileError, match="only the spec's calibration profiles"):
        replace_spec(path, replace(spec, padding=0.3))
