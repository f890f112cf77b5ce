"""`python -m train.export_fp16`: a float16 copy of a trained refiner, checked on real crops before it is kept."""

from __future__ import annotations

import shutil

import pytest
import torch

from pipeline.model.checkpoint import load_refiner, read_checkpoint, save_refiner
from pipeline.model.defaults import default_refiner
from train import export_fp16
from train.export_fp16 import main

pytestmark = pytest.mark.slow


def test_the_committed_refiner_in_float16_refines_real_crops_like_float32(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export_fp16, "FRAMES", (120, 240))  # two frames of people: the command's check, quicker
    # The float32 reference: the committed weights as float32 (if the committed file is already float16,
    # the copy repeats its values and the difference is 0: the conversion's own run measured it then).
    source = save_refiner(load_refiner(default_refiner()), tmp_path / "runs" / "refiner.safetensors")
    shutil.copyfile(default_refiner().with_suffix(".log.jsonl"), source.with_suffix(".log.jsonl"))
    target = tmp_path / "engines" / "refiner.safetensors"
    assert main([str(source), str(target)]) == 0  # 1 beyond TOLERANCE_PX / TOLERANCE_IOU
    printed = capsys.readouterr().out
    assert "boxes on real crops" in printed and f"wrote {target}" in printed
    tensors, spec, _ = read_checkpoint(target)
    assert {tensor.dtype for tensor in tensors.values()} <= {torch.float16, torch.int64} and spec == load_refiner(source).spec
    assert target.stat().st_size < 0.55 * source.stat().st_size
    assert target.with_suffix(".log.jsonl").read_text() == source.with_suffix(".log.jsonl").read_text()
    assert sorted(target.parent.iterdir()) == sorted([target, target.with_suffix(".log.jsonl")])  # no unchecked copy left


def test_the_float32_file_is_never_overwritten(tmp_path, capsys):
    source = tmp_path / "refiner.safetensors"
    assert main([str(source), str(tmp_path / "." / "refiner.safetensors")]) == 2
    assert "same file" in capsys.readouterr().err
