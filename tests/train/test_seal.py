"""python -m train.seal: an old checkpoint gets its digest, keeps its weights, and then refuses damage."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import SPEC_KEY, read_spec
from pipeline.model.checkpoint import load_refiner
from pipeline.model.net import RefinerNet
from tests.pipeline.model.test_checkpoint import damage_weights
from train.seal import main

SPEC = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("a",))


def test_seal_writes_the_digest_once_and_then_checks_it(tmp_path, capsys):
    model = RefinerNet(SPEC).eval()
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={SPEC_KEY: SPEC.to_json()})
    assert main([str(path)]) == 0 and "sealed sha256:" in capsys.readouterr().out
    loaded = load_refiner(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    assert main([str(path)]) == 0 and "already sealed" in capsys.readouterr().out
    damage_weights(path)
    assert main([str(path)]) == 2
    assert "do not match the digest" in capsys.readouterr().err
    assert read_spec(path).weights_digest
