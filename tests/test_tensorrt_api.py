"""The TensorRT API check: its analysis on synthetic sources, and the project against the real 10.x/11.x/RTX bindings.

The real-bindings tests download ~1.3 MB wheels from PyPI into .cache/trt-wheels and build stub
libraries with the C compiler; they skip, saying which, where either is unavailable.
"""

from __future__ import annotations

import textwrap

import pytest

from tools.check_tensorrt_api import (
    DEFAULT_CACHE,
    DEFAULT_FILES,
    DEFAULT_REPORT,
    DEFAULT_WHEELS,
    REMOVED_NAMES,
    REPO,
    Api,
    BindingsUnavailable,
    check,
    collect_usages,
    fetch_api,
    missing,
)


def fake_api(label: str, version: str, fp16: bool) -> Api:
    """A hand-written slice of the bindings: 11.x and RTX lost BuilderFlag.FP16, only RTX has compute capabilities."""
    rtx = label.startswith("rtx")
    classes = {
        "Builder": {"create_builder_config": "IBuilderConfig"},
        "IBuilderConfig": {"set_flag": None, **({"set_compute_capability": None} if rtx else {})},
        "BuilderFlag": {"FP16": None} if fp16 else {},
        "Runtime": {"deserialize_cuda_engine": "ICudaEngine", **({"get_engine_validity": None} if rtx else {})},
        "ICudaEngine": {"create_execution_context": "IExecutionContext", "get_tensor_name": None},
        "IExecutionContext": {"execute_async_v3": None, "set_tensor_address": None},
    }
    return Api(label, version, frozenset(classes) | {"__version__"}, classes)


FAKES = [fake_api("ten", "10.5.0", fp16=True), fake_api("eleven", "11.1.0", fp16=False)]
WITH_RTX = [*FAKES, fake_api("rtx 1.7", "1.7.1", fp16=False)]


def missing_names(source: str, apis=FAKES) -> dict[str, list[str]]:
    usages = collect_usages(textwrap.dedent(source), "snippet.py", apis)
    return {usage.name: gaps for usage in usages if (gaps := missing(usage, apis))}


def test_removed_call_on_an_object_typed_through_return_types_fails():
    source = """
        import tensorrt as trt
        def run(data, stream):
            runtime = trt.Runtime(None)
            engine = runtime.deserialize_cuda_engine(data)
            context = engine.create_execution_context()
            context.set_tensor_address("crops", 0)
            context.execute_async_v2([0, 0], stream)
    """
    assert missing_names(source) == {"IExecutionContext.execute_async_v2": ["ten", "eleven"]}


def test_removed_name_fails_even_where_the_type_is_unknown():
    assert missing_names("def index(engine):\n    return engine.get_binding_index('crops')\n") == {
        "?.get_binding_index": ["ten", "eleven"]
    }


def test_types_flow_through_self_attributes_and_annotated_helpers():
    source = """
        import tensorrt as trt
        class Backend:
            def __init__(self, data):
                self._engine = trt.Runtime(None).deserialize_cuda_engine(data)
            def _context(self) -> trt.IExecutionContext:
                return self._engine.create_execution_context()
            def run(self, stream):
                self._engine.get_tensor_names()
                self._context().execute_async_v2([], stream)
    """
    assert set(missing_names(source)) == {"ICudaEngine.get_tensor_names", "IExecutionContext.execute_async_v2"}


def test_version_guard_limits_a_name_to_the_versions_that_take_the_branch():
    guarded = """
        import tensorrt as trt
        def configure(builder: trt.Builder, half: bool):
            config = builder.create_builder_config()
            if tensorrt_major() < 11:
                if half:
                    config.set_flag(trt.BuilderFlag.FP16)
    """
    assert missing_names(guarded) == {}
    combined = guarded.replace(
        "if tensorrt_major() < 11:\n                if half:", "if half and tensorrt_major() < 11:\n                if True:"
    )
    assert missing_names(combined) == {}
    otherwise = guarded.replace(
        "if tensorrt_major() < 11:", "if 11 <= tensorrt_major():\n                pass\n            else:"
    )
    assert missing_names(otherwise) == {}
    unguarded = guarded.replace("if tensorrt_major() < 11:", "if half:")
    assert missing_names(unguarded) == {"trt.BuilderFlag.FP16": ["eleven"]}


def test_flavour_guard_limits_names_to_tensorrt_rtx_or_to_the_others():
    source = """
        import tensorrt as trt
        def configure(flavour, builder: trt.Builder, data):
            config = builder.create_builder_config()
            if flavour.is_rtx():
                config.set_compute_capability(None, 0)
                trt.Runtime(None).get_engine_validity(data)
            else:
                if flavour.tensorrt_major() < 11:
                    config.set_flag(trt.BuilderFlag.FP16)
            if not flavour.is_rtx() and flavour.tensorrt_major() < 11:
                config.set_flag(trt.BuilderFlag.FP16)
    """
    assert missing_names(source, WITH_RTX) == {}
    # Without the flavour test, RTX (major 1 < 11) takes the FP16 branch and the 10/11 bindings the RTX calls.
    unguarded = source.replace("if not flavour.is_rtx() and", "if").replace("if flavour.is_rtx():", "if True:")
    assert missing_names(unguarded, WITH_RTX) == {
        "IBuilderConfig.set_compute_capability": ["ten", "eleven"],
        "Runtime.get_engine_validity": ["ten", "eleven"],
        "trt.BuilderFlag.FP16": ["rtx 1.7"],
    }


def test_from_import_hides_uses_and_is_refused():
    assert list(missing_names("from tensorrt import Builder\n")) == [
        "?.from-import (write `import tensorrt as trt` so every use is visible)"
    ]


@pytest.fixture(scope="module")
def real_apis() -> list[Api]:
    try:
        return [fetch_api(requirement, DEFAULT_CACHE) for requirement in DEFAULT_WHEELS]
    except BindingsUnavailable as error:
        pytest.skip(f"real TensorRT bindings unavailable: {error}")


def test_project_uses_only_names_the_real_bindings_export(real_apis):
    report, passed = check([REPO / name for name in DEFAULT_FILES], real_apis)
    assert passed, report
    assert {api.major for api in real_apis} == {1, 10, 11} and any(api.rtx for api in real_apis)


def test_committed_report_is_a_passing_run_of_the_current_names(real_apis):
    """tools/tensorrt_api_check.txt documents the last verified result; regenerate it when the names change."""
    report, _ = check([REPO / name for name in DEFAULT_FILES], real_apis)
    committed = DEFAULT_REPORT.read_text()
    assert "result: PASS" in committed
    assert table_names(committed) == table_names(report), "regenerate it: python tools/check_tensorrt_api.py"


def table_names(report: str) -> set[str]:
    """First column of the report's table: the rows between the `name` header and the blank line."""
    rows = report.split("\nname ", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return {row.split()[0] for row in rows}


def test_unavailable_wheel_is_a_one_line_reason(tmp_path):
    with pytest.raises(BindingsUnavailable, match=r"cannot download tensorrt-cu12-bindings==0\.0\.1 from PyPI") as error:
        fetch_api("tensorrt-cu12-bindings==0.0.1", tmp_path)
    assert "\n" not in str(error.value)


def test_real_bindings_lack_every_removed_name_and_11_lacks_fp16(real_apis):
    for api in real_apis:
        assert not any(REMOVED_NAMES & set(members) for members in api.classes.values()), api.label
        assert ("FP16" in api.classes["BuilderFlag"]) == (api.major == 10), api.label
    removed_call = """
        import tensorrt as trt
        def run(engine: trt.ICudaEngine, stream):
            context = engine.create_execution_context()
            context.execute_async_v2([], stream)
            return engine.get_binding_index("crops")
    """
    labels = [api.label for api in real_apis]
    assert missing_names(removed_call, real_apis) == {
        "IExecutionContext.execute_async_v2": labels,
        "ICudaEngine.get_binding_index": labels,
    }
