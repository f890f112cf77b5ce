"""The registry's table: what `auto` tries on a GPU and on a CPU, and what each runtime accepts."""

from __future__ import annotations

from pipeline.backends import BACKENDS, KINDS, REGISTRY
from pipeline.backends.build import BuildOptions


def test_auto_on_a_gpu_tries_the_fp16_tensorrt_engine_first_and_never_the_cpu_runtimes():
    on_cuda = [entry.name for entry in REGISTRY if entry.auto and "cuda" in entry.devices]
    assert on_cuda[0] == "tensorrt" and "openvino" not in on_cuda
    assert BuildOptions().precision == "fp16"  # the engine build_engine.py makes by default


def test_auto_on_a_cpu_times_openvino_against_onnxruntime():
    timed = [entry.name for entry in REGISTRY if entry.auto and entry.timed]
    assert timed == ["openvino", "onnxruntime"] and all("cpu" in BACKENDS[name].devices for name in timed)


def test_every_runtime_is_a_cli_choice_and_says_which_files_it_accepts():
    assert KINDS == ("auto", *(entry.name for entry in REGISTRY))
    assert BACKENDS["openvino"].accepts == (".onnx", ".safetensors", ".engine")
    assert BACKENDS["torch"].accepts == (".safetensors",)
    assert BACKENDS["tensorrt"].accepts == (".engine", ".onnx", ".safetensors")
    assert not BACKENDS["triton"].auto
