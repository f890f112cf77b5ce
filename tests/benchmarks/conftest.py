"""A tiny synthetic COCO dataset and a tiny random refiner for the accuracy-style benchmarks."""

from __future__ import annotations

import json

import pytest

from build_engine import random_refiner
from pipeline.onnx_export import export_onnx
from pipeline.spec import RefinerSpec
from pipeline.synthetic import write_coco_dataset


@pytest.fixture(scope="module")
def dataset_and_refiner(tmp_path_factory):
    root = tmp_path_factory.mktemp("accuracy")
    annotations = write_coco_dataset(root / "data", n_images=3, width=160, height=120, seed=0)
    names = tuple(c["name"] for c in sorted(json.loads(annotations.read_text())["categories"], key=lambda c: c["id"]))
    spec = RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=names)
    return annotations, export_onnx(random_refiner(spec), root / "tiny.onnx", max_batch=8)
