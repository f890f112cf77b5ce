import pytest
import torch

from pipeline.core.errors import ModelFileError, SpecError
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import read_spec, SPEC_KEY
from pipeline.model.checkpoint import half_precision_copy, load_refiner, read_checkpoint, replace_spec, save_refiner
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


def damage_weights(path, count: int = 4096, seed: int = 0) -> None:
    """Random bytes written into the middle of the tensor data: the file still parses, the weights are wrong."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = torch.randint(0, 256, (count,), generator=torch.Generator().manual_seed(seed),
                                                  dtype=torch.uint8).numpy().tobytes()
    path.write_bytes(bytes(data))


def test_saved_spec_carries_the_weights_digest_and_damage_is_refused(tmp_path):
    path = save_refiner(RefinerNet(SPEC), tmp_path / "m.safetensors")
    digest = read_spec(path).weights_digest
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    damage_weights(path)
    with pytest.raises(ModelFileError, match="do not match the digest") as caught:
        load_refiner(path)
    assert "\n" not in str(caught.value)


def test_digest_depends_on_weights_not_metadata(tmp_path):
    from dataclasses import replace

    from pipeline.model.checkpoint import replace_spec

    model = RefinerNet(SPEC)
    path = save_refiner(model, tmp_path / "m.safetensors")
    digest = read_spec(path).weights_digest
    replace_spec(path, replace(SPEC, extra={"calibration.score_power": "1"}))
    assert read_spec(path).weights_digest == digest
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert read_spec(save_refiner(model, tmp_path / "other.safetensors")).weights_digest != digest


def test_a_file_without_digest_loads_and_seal_adds_it(tmp_path):
    from safetensors.torch import save_file

    from pipeline.model.checkpoint import seal

    model = RefinerNet(SPEC).eval()
    old = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(old),
              metadata={SPEC_KEY: SPEC.to_json(), "bbrefinement.train": "{}"})
    assert read_spec(old).weights_digest == ""
    load_refiner(old)  # loads unchecked
    digest = seal(old)
    assert read_spec(old).weights_digest == digest and digest.startswith("sha256:")
    from safetensors import safe_open

    with safe_open(str(old), framework="pt") as handle:
        assert handle.metadata()["bbrefinement.train"] == "{}"
    damage_weights(old)
    with pytest.raises(ModelFileError, match="do not match the digest"):
        load_refiner(old)


def test_a_float16_copy_is_half_the_file_and_loads_as_float32(tmp_path):
    from dataclasses import replace

    model = RefinerNet(SPEC).eval()
    full = save_refiner(model, tmp_path / "full.safetensors", {"bbrefinement.train": "{}"})
    half = half_precision_copy(full, tmp_path / "half.safetensors")
    tensors, spec, extra = read_checkpoint(half)
    stored = {tensor.dtype for tensor in tensors.values()}
    assert torch.float16 in stored and torch.float32 not in stored  # integer buffers (BN counters) stay integers
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert spec == SPEC and extra == {"bbrefinement.train": "{}"}
    loaded = load_refiner(half)
    assert {parameter.dtype for parameter in loaded.parameters()} == {torch.float32}
    crops = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    vectors = torch.rand(2, SPEC.vector_size)
    torch.testing.assert_close(loaded(crops, vectors), model(crops, vectors), atol=2e-2, rtol=0)
    replace_spec(half, replace(SPEC, extra={"note": "recalibrated"}))  # calibrate --write keeps float16
    tensors, spec, extra = read_checkpoint(half)
    assert torch.float32 not in {tensor.dtype for tensor in tensors.values()}
    assert spec.extra == {"note": "recalibrated"} and extra == {"bbrefinement.train": "{}"}


def test_weights_float16_cannot_hold_are_refused(tmp_path):
    model = RefinerNet(SPEC)
    with torch.no_grad():
        next(model.parameters()).fill_(1e6)
    full = save_refiner(model, tmp_path / "full.safetensors")
    with pytest.raises(ModelFileError, match="beyond float16's range"):
        half_precision_copy(full, tmp_path / "half.safetensors")
    assert not (tmp_path / "half.safetensors").exists()
