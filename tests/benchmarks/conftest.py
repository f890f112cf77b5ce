"""A tiny synthetic COCO dataset and a tiny random refiner for the accuracy-style benchmarks."""

from __future__ import annotations

import json

import pytest

from pipeline.core.spec import RefinerSpec
from pipeline.data.synthetic import write_coco_dataset
from pipeline.model.export import export_onnx
from pipeline.model.random_init import random_refiner


@pytest.fixture(scope="module")
def dataset_and_refiner(tmp_path_factory):
    root = tmp_path_factory.mktemp("accuracy")
    annotations = write_coco_dataset(root / "data", n_images=3, width=160, height=120, seed=0)
    names = tuple(c["name"] for c in sorted(json.loads(annotations.read_text())["categories"], key=lambda c: c["id"]))
    spec = RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=names)
    return annotations, export_onnx(random_refiner(spec), root / "tiny.onnx", max_batch=8)
