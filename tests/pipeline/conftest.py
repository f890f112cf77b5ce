"""A small refiner shared by the backend and model tests: a real B0 at 128 px, one model, ONNX and checkpoint per session."""

from __future__ import annotations

import pytest

from pipeline.core.spec import RefinerSpec
from pipeline.model.checkpoint import save_refiner
from pipeline.model.export import export_onnx
from pipeline.model.random_init import random_refiner

# Interface, batching and selection do not depend on the native resolution, so a small side keeps them
# fast; not below 128 px, where a random-init B0 is chaotic enough that FP32 rounding reaches 3e-4.
SMALL = RefinerSpec(backbone="efficientnet_b0", input_size=128, class_names=("person", "car"))


@pytest.fixture(scope="session")
def small_model():
    return random_refiner(SMALL)


@pytest.fixture(scope="session")
def small_onnx(small_model, tmp_path_factory):
    return export_onnx(small_model, tmp_path_factory.mktemp("onnx") / f"{SMALL.name}.onnx", max_batch=8)


@pytest.fixture(scope="session")
def small_checkpoint(small_model, tmp_path_factory):
    return save_refiner(small_model, tmp_path_factory.mktemp("checkpoint") / "refiner.safetensors")
