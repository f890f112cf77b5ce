"""Static-shape copies: earned by repeated batch sizes, bounded in number, compiled off the calling thread, same outputs."""

from __future__ import annotations

import locale
import threading

import numpy as np
import pytest

from pipeline.backends.openvino_shapes import StaticShapes


class RecordingCompiler:
    """Stands in for OpenVINO's compile in the policy tests: records sizes and the thread they ran on."""

    def __init__(self, fail: set[int] | None = None) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.fail = fail or set()

    def __call__(self, size: int) -> str:
        self.sizes.append(size)
        self.threads.add(threading.current_thread().name)
        if size in self.fail:
            raise RuntimeError("no suitable implementation")
        return f"model-{size}"


def test_a_size_gets_its_copy_only_after_min_calls_and_off_the_calling_thread():
    compiler = RecordingCompiler()
    shapes = StaticShapes(compiler, min_calls=3, max_sizes=4)
    assert [shapes.compiled(8) for _ in range(3)] == [None, None, None]  # the third call starts the compile
    shapes.wait()
    assert shapes.compiled(8) == "model-8" and shapes.ready_sizes() == [8]
    assert compiler.sizes == [8] and compiler.threads == {"openvino-compile_0"}
    shapes.close()


def test_no_more_than_max_sizes_are_compiled():
    compiler = RecordingCompiler()
    shapes = StaticShapes(compiler, min_calls=1, max_sizes=2)
    for size in (1, 2, 3, 4, 1, 2, 3):
        shapes.compiled(size)
    shapes.wait()
    assert sorted(compiler.sizes) == [1, 2] and shapes.ready_sizes() == [1, 2]
    assert shapes.compiled(3) is None  # sizes past the bound run on the dynamic model
    shapes.close()


def test_a_failed_compile_leaves_that_size_dynamic_with_a_warning(caplog):
    shapes = StaticShapes(RecordingCompiler(fail={5}), min_calls=1)
    shapes.compiled(5)
    shapes.wait()
    assert shapes.compiled(5) is None and shapes.ready_sizes() == []
    assert "could not compile the 5-crop model" in caplog.text
    shapes.close()


def test_zero_max_sizes_never_compiles():
    compiler = RecordingCompiler()
    shapes = StaticShapes(compiler, min_calls=1, max_sizes=0)
    for _ in range(5):
        assert shapes.compiled(8) is None
    shapes.wait()
    assert compiler.sizes == []
    shapes.close()


@pytest.mark.usefixtures("private_engine_dirs")
def test_the_static_copy_gives_the_dynamic_models_outputs(small_model, small_onnx):
    pytest.importorskip("openvino")
    from pipeline.backends.openvino import OpenVinoBackend
    from pipeline.model.artifacts import ModelFile
    from pipeline.model.random_init import random_inputs

    locale_before = locale.setlocale(locale.LC_ALL)
    backend = OpenVinoBackend(ModelFile.read(small_onnx), precision="fp32")
    crops, vectors = random_inputs(small_model.spec, 5, seed=3)
    dynamic = [backend.refine(crops, vectors) for _ in range(3)]  # the third call earns a static copy
    backend.settle()
    assert backend.static_shapes.ready_sizes() == [5]
    static = backend.refine(crops, vectors)
    assert np.abs(static - dynamic[0]).max() <= 1e-5
    assert backend.refine(crops[:2], vectors[:2]).shape == (2, small_model.spec.output_size)  # other sizes still run
    backend.close()
    assert locale.setlocale(locale.LC_ALL) == locale_before  # OpenVINO's setlocale calls are serialised (OPENVINO_LOCK)


def test_a_compile_under_way_is_finished_before_close_returns():
    started, release = threading.Event(), threading.Event()

    def slow_compile(size: int) -> str:
        started.set()
        release.wait(5)
        return f"model-{size}"

    shapes = StaticShapes(slow_compile, min_calls=1)
    shapes.compiled(4)
    assert started.wait(5)
    closer = threading.Thread(target=shapes.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # still waiting for the compile
    release.set()
    closer.join(5)
    assert not closer.is_alive() and shapes.compiled(4) is None
