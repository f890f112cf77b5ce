"""ONNX export: the interface and spec travel inside the file, and a file that disagrees with its spec is refused."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from pipeline.backends.onnxruntime import OnnxRuntimeBackend
from pipeline.backends.torch import TorchBackend
from pipeline.core.errors import BBRefinementError, ModelFileError
from pipeline.model.artifacts import SPEC_KEY, ModelFile, read_sidecar, read_spec, sidecar_path, write_sidecar
from pipeline.model.export import cached_onnx, export_onnx, prune_cache
from pipeline.model.random_init import random_inputs


def tensor_types(path) -> dict[str, int]:
    graph = onnx.load(str(path)).graph
    return {value.name: value.type.tensor_type.elem_type for value in [*graph.input, *graph.output]}


def test_export_stores_spec_and_engine_interface(small_model, small_onnx):
    assert read_spec(small_onnx) == small_model.spec
    assert tensor_types(small_onnx) == {"crops": TensorProto.UINT8, "vectors": TensorProto.FLOAT, "boxes": TensorProto.FLOAT}
    assert onnx.load(str(small_onnx)).opset_import[0].version >= 17


@pytest.fixture(scope="module")
def half_onnx(small_model, tmp_path_factory):
    """FP16 export traces in half precision: ~25 s on a CPU without fast half kernels, so done once."""
    small_model.train()  # export must neither depend on nor change the caller's mode
    try:
        return export_onnx(small_model, tmp_path_factory.mktemp("half") / "half.onnx", max_batch=4, fp16=True)
    finally:
        assert small_model.training and {parameter.dtype for parameter in small_model.parameters()} == {torch.float32}
        small_model.eval()


@pytest.mark.slow
def test_fp16_export_computes_in_half_between_uint8_and_float32(small_model, half_onnx):
    proto = onnx.load(str(half_onnx))
    assert tensor_types(half_onnx) == {"crops": TensorProto.UINT8, "vectors": TensorProto.FLOAT, "boxes": TensorProto.FLOAT}
    kernel_types = {initializer.data_type for initializer in proto.graph.initializer if len(initializer.dims) == 4}
    assert kernel_types == {TensorProto.FLOAT16}
    crops, vectors = random_inputs(small_model.spec, 4, seed=3)
    half = OnnxRuntimeBackend(ModelFile.read(half_onnx), "cpu").refine(crops, vectors)
    full = TorchBackend(small_model, "cpu").refine(crops, vectors)
    assert half.dtype == np.float32
    # Half-precision noise of a random-init network, not a trained one: ~1e-2 typical, a few outliers.
    # A wrong graph (lost normalisation, swapped channels) is off by ~0.1 everywhere.
    error = np.abs(half - full)
    assert error.mean() < 2e-2 and error.max() < 0.15


def with_spec(source, target, spec_json: str | None) -> None:
    proto = onnx.load(str(source))
    props = {} if spec_json is None else {SPEC_KEY: spec_json}
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(target))


def test_onnx_whose_graph_disagrees_with_its_spec_is_rejected(small_model, small_onnx, tmp_path):
    wrong = tmp_path / "wrong.onnx"
    with_spec(small_onnx, wrong, replace(small_model.spec, input_size=96).to_json())
    with pytest.raises(
        ModelFileError, match=r"'crops' is uint8 \(N, 128, 128, 3\) but its spec .* needs uint8 \(N, 96, 96, 3\)"
    ) as error:
        ModelFile.read(wrong)
    assert "\n" not in str(error.value)
    with_spec(small_onnx, wrong, replace(small_model.spec, class_names=("person",)).to_json())
    with pytest.raises(ModelFileError, match=r"'vectors' is float32 \(N, 6\) .* needs float32 \(N, 5\)"):
        read_spec(wrong)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "holds no refiner spec"), ("{not json", "not valid JSON"), (b"garbage", "not a readable ONNX file")],
)
def test_onnx_without_a_usable_spec_is_a_one_line_error(small_onnx, tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with_spec(small_onnx, path, content)
    with pytest.raises(BBRefinementError, match=message) as error:
        read_spec(path)
    assert "\n" not in str(error.value)


def test_missing_onnx_says_so(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        read_spec(tmp_path / "absent.onnx")


def test_sidecar_sits_beside_its_artifact_and_round_trips(small_model, tmp_path):
    artifact = tmp_path / "refiner.engine"
    assert sidecar_path(artifact) == tmp_path / "refiner.engine.json"
    with pytest.raises(ModelFileError, match="no sidecar"):
        read_sidecar(artifact)
    write_sidecar(artifact, {"spec": json.loads(small_model.spec.to_json()), "tensorrt": None})
    assert read_sidecar(artifact)["tensorrt"] is None
    sidecar_path(artifact).write_text("{")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_sidecar(artifact)


def test_checkpoint_is_exported_once_per_content(small_model, small_checkpoint, tmp_path):
    first = cached_onnx(small_checkpoint, tmp_path / "cache")
    stamp = os.stat(first).st_mtime_ns
    assert cached_onnx(small_checkpoint, tmp_path / "cache") == first
    assert os.stat(first).st_mtime_ns == stamp
    assert first.name == f"{small_model.spec.name}.onnx" and read_spec(first) == small_model.spec


def test_the_export_cache_keeps_only_the_most_recently_used_entries(tmp_path):
    cache = tmp_path / "cache"
    names = {"newest": "a" * 16, "second": "b" * 16, "third": "c" * 16, "oldest": "d" * 16, "openvino": "openvino"}
    for age, name in enumerate(names.values()):
        entry = cache / name
        entry.mkdir(parents=True)
        (entry / "model.onnx").write_bytes(b"x")
        os.utime(entry, (1_000_000 - age * 100, 1_000_000 - age * 100))
    prune_cache(cache, 2)
    # Other caches' folders (the oldest here) are not exports and stay.
    assert sorted(entry.name for entry in cache.iterdir()) == sorted([names["newest"], names["second"], "openvino"])
