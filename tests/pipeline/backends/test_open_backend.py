"""open_backend: which runtime a model file gets, and one-line errors when none can run it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.backends import open_backend
from pipeline.core.errors import BackendError, BBRefinementError, ModelFileError
from pipeline.model.artifacts import file_sha256, write_sidecar
from pipeline.model.random_init import random_inputs

# TensorRT-RTX is installed everywhere (requirements.txt); without a GPU no engine can run, whatever the flavour.
no_tensorrt = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback where no GPU can run an engine")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where no CUDA GPU exists")


pytestmark = pytest.mark.usefixtures("private_engine_dirs")  # tests/conftest.py


def fake_engine(path, model, checkpoint=None):
    """An engine file TensorRT would reject, with a sidecar pointing at `checkpoint`: enough for selection."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an engine")
    sha = file_sha256(checkpoint) if checkpoint else None
    write_sidecar(path, {"spec": json.loads(model.spec.to_json()), "checkpoint_sha256": sha})
    return path


@no_tensorrt
def test_auto_exports_a_checkpoint_once_and_runs_it_on_a_cpu_runtime(small_model, small_checkpoint, private_engine_dirs):
    backend = open_backend("auto", small_checkpoint, "cpu", max_batch=4)
    assert backend.name in ("openvino", "onnxruntime") and backend.spec == small_model.spec  # the faster here
    assert len(list((private_engine_dirs / "cache").rglob("*.onnx"))) == 1
    crops, vectors = random_inputs(small_model.spec, 5, seed=2)
    reference = open_backend("torch", small_checkpoint, "cpu").refine(crops, vectors)
    np.testing.assert_allclose(backend.refine(crops, vectors), reference, rtol=0, atol=backend.parity_tolerance)


def test_explicit_kinds_open_their_runtime(small_checkpoint, small_onnx):
    assert open_backend("torch", small_checkpoint, "cpu").name == "torch"
    assert open_backend("onnxruntime", small_onnx, "cpu").name == "onnxruntime"
    assert open_backend("openvino", small_onnx, "cpu").name == "openvino"


@no_tensorrt
def test_auto_on_an_engine_without_tensorrt_runs_the_onnx_beside_it(small_model, small_onnx, tmp_path):
    engine = fake_engine(tmp_path / "built" / small_onnx.with_suffix(".engine").name, small_model)
    (engine.parent / small_onnx.name).write_bytes(small_onnx.read_bytes())
    assert open_backend("auto", engine, "cpu").name in ("openvino", "onnxruntime")


@no_tensorrt
def test_tensorrt_without_the_package_says_so_and_how_to_build(small_model, small_checkpoint, private_engine_dirs):
    with pytest.raises(BackendError, match="no engine built from .*build_engine.py"):
        open_backend("tensorrt", small_checkpoint)
    # build_engine.py's engine for this very checkpoint is found in engines/; a stale one is not.
    fake_engine(private_engine_dirs / "engines" / f"{small_checkpoint.stem}.engine", small_model, small_checkpoint)
    with pytest.raises(BackendError, match="TensorRT needs a CUDA GPU"):
        open_backend("tensorrt", small_checkpoint)


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("tflite", "refiner.onnx", "backend 'tflite' is not one of auto, tensorrt, openvino, onnxruntime, torch"),
        ("auto", "refiner.pt", r"is not a \.safetensors, \.onnx, \.engine file"),
        ("auto", "absent.safetensors", "does not exist"),
    ],
)
def test_bad_requests_are_one_line_errors(tmp_path, kind, name, message):
    with pytest.raises(BBRefinementError, match=message) as error:
        open_backend(kind, tmp_path / name)
    assert "\n" not in str(error.value)


def test_torch_needs_the_checkpoint(small_onnx):
    with pytest.raises(BackendError, match="needs the .safetensors checkpoint"):
        open_backend("torch", small_onnx)


def test_a_corrupt_model_file_is_refused_once_before_any_backend_is_tried(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="not a readable ONNX file") as error:
        open_backend("auto", corrupt, "cpu")
    assert "\n" not in str(error.value)


@no_tensorrt
def test_auto_lists_every_reason_when_nothing_runs_the_file(small_model, tmp_path):
    engine = fake_engine(tmp_path / "lonely.engine", small_model)  # no GPU, no ONNX beside it, not a checkpoint
    with pytest.raises(BackendError, match=r"no backend can run .*tensorrt: .*openvino: .*onnxruntime: .*torch: ") as error:
        open_backend("auto", engine, "cpu")
    assert "\n" not in str(error.value)


@no_cuda
@pytest.mark.parametrize("kind", ["torch", "onnxruntime", "openvino"])
def test_cuda_without_a_gpu_is_refused(small_checkpoint, small_onnx, kind):
    with pytest.raises(BackendError, match="cuda|CUDA"):
        open_backend(kind, small_checkpoint if kind == "torch" else small_onnx, "cuda")
