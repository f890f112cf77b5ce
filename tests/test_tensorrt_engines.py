"""Real TensorRT engines built in CI: TensorRT-RTX builds ahead of time on this CPU, so every backbone's engine is built here.

What a build can prove without a GPU: the network TensorRT parsed (tensors, types, shapes), the
profile, the serialized engine and its sidecar. Running an engine needs a GPU: those tests live in
tests/pipeline/backends/test_tensorrt_backend.py and skip here. Builds are the `slow` ones (2-10 s each).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from pipeline.backends import build as engine_build
from pipeline.core.errors import BackendError
from pipeline.backends.tensorrt import (
    PORTABLE_TARGETS,
    BatchProfile,
    BuiltEngine,
    TensorRTUnavailable,
    build_engine_file,
    flavour_named,
    parse_targets,
)
from pipeline.core.spec import BACKBONES, RefinerSpec, paper_spec
from pipeline.model.artifacts import file_sha256, read_sidecar
from pipeline.model.export import export_onnx
from pipeline.model.net import RefinerNet
from pipeline.model.quantize import CalibrationCrops, quantize_onnx
from pipeline.model.random_init import random_inputs, random_refiner

REPO = Path(__file__).resolve().parents[1]
PERSON_REFINER = next((REPO / "engines").glob("refiner-person-*.safetensors"))
ENGINE_CACHE = REPO / ".cache" / "engines"  # ignored by git

try:
    RTX = flavour_named("rtx")
except TensorRTUnavailable as error:  # requirements.txt pins it: only a broken install lands here
    pytest.fail(f"TensorRT-RTX must import in CI: {error}", pytrace=False)


def build(tmp_path: Path, models: Iterator, precision: str) -> Path:
    out = tmp_path / precision
    engine_build.build_all(models, engine_build.BuildOptions(out=out, precision=precision, trt="rtx", max_batch=32))
    (engine,) = out.glob("*.engine")
    return engine


def expected_network(spec: RefinerSpec) -> dict:
    size = spec.input_size
    return {
        "inputs": {
            "crops": {"dtype": "UINT8", "shape": [-1, size, size, 3]},
            "vectors": {"dtype": "FLOAT", "shape": [-1, spec.vector_size]},
        },
        "outputs": {"boxes": {"dtype": "FLOAT", "shape": [-1, spec.output_size]}},
    }


def check_engine(engine: Path, spec: RefinerSpec, precision: str) -> dict:
    sidecar = read_sidecar(engine)
    assert sidecar["spec"] == json.loads(spec.to_json())
    assert sidecar["tensorrt_flavour"] == "rtx" and sidecar["tensorrt"] == RTX.version
    assert sidecar["precision"] == precision and sidecar["profile"] == {"minimum": 1, "optimum": 8, "maximum": 32}
    assert sidecar["compute_capabilities"] == list(PORTABLE_TARGETS)
    assert sidecar["network"] == expected_network(spec)
    assert engine.stat().st_size == sidecar["serialized_bytes"] > 1_000_000
    assert sidecar["build_seconds"] > 0 and "--trt rtx --compute-capability sm80,sm86,sm89,sm120,sm121" in sidecar["rebuild_command"]
    if torch.cuda.is_available():
        assert "executed" in sidecar
    else:
        assert sidecar["executed"] is False and "torch sees none" in sidecar["not_executed_because"]
    return sidecar


@pytest.fixture(scope="module")
def person_engines(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("person")
    return {precision: build(root, engine_build.models_to_build(PERSON_REFINER), precision) for precision in ("fp16", "fp32")}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_committed_person_refiner_builds_a_real_engine(person_engines, precision):
    from pipeline.model.artifacts import read_spec

    sidecar = check_engine(person_engines[precision], read_spec(PERSON_REFINER), precision)
    assert sidecar["checkpoint"] == str(PERSON_REFINER)


@pytest.mark.slow
def test_fp16_engine_holds_half_weights(person_engines):
    """Strongly typed from the FP16 ONNX: its weights are half the FP32 engine's, so the whole engine is smaller."""
    fp16, fp32 = (read_sidecar(person_engines[precision]) for precision in ("fp16", "fp32"))
    assert fp16["source_onnx_bytes"] < 0.6 * fp32["source_onnx_bytes"]
    assert fp16["serialized_bytes"] < fp32["serialized_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_b0_builds_a_real_engine(tmp_path, precision):
    engine = build(tmp_path, engine_build.models_to_build(backbones=("b0",)), precision)
    check_engine(engine, paper_spec("b0", ("person",)), precision)


def cached_engine(model: RefinerNet, cache: Path) -> tuple[Path, BuiltEngine]:
    """FP16 ONNX -> RTX engine, kept under .cache/engines/ by the ONNX's hash: a changed graph is always rebuilt."""
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = export_onnx(model, Path(scratch) / "model.onnx", 32, fp16=True)
        key = f"{file_sha256(onnx_path)[:16]}-rtx{RTX.version}-{'-'.join(PORTABLE_TARGETS)}"
        engine, record = cache / f"{key}.engine", cache / f"{key}.json"
        if not record.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            built = build_engine_file(RTX, onnx_path, engine, model.spec, "fp16", BatchProfile(1, 8, 32))
            record.write_text(json.dumps(dataclasses.asdict(built)))
    fields = json.loads(record.read_text())
    return engine, BuiltEngine(**{**fields, "targets": tuple(fields["targets"])})


@pytest.mark.slow
@pytest.mark.parametrize("short", [name for name in BACKBONES if name != "b0"])
def test_every_backbone_builds_a_real_fp16_engine(short):
    """The rest of the table at FP16, without the CLI's parity runs: what is new per backbone is TensorRT's build."""
    torch.manual_seed(0)
    spec = paper_spec(short, ("person",))
    engine, built = cached_engine(RefinerNet(spec).eval(), ENGINE_CACHE)
    network = expected_network(spec)
    assert (built.inputs, built.outputs) == (network["inputs"], network["outputs"])
    assert engine.stat().st_size == built.serialized_bytes > 1_000_000 and built.targets == PORTABLE_TARGETS


@pytest.mark.slow
def test_int8_qdq_onnx_builds_a_real_engine(tmp_path):
    """NNCF's QDQ ONNX (the OpenVINO INT8 model) is accepted by TensorRT-RTX: explicit int8 from its scales.

    Build only: whether the engine keeps accuracy needs a GPU (uint8 activation zero points are
    imported as int8 with a warning; engines/README.md).
    """
    spec = RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=("person",), head="edges")
    model = random_refiner(spec)
    fp32 = export_onnx(model, tmp_path / "tiny.onnx", 4)
    int8 = quantize_onnx(fp32, CalibrationCrops(*random_inputs(spec, 16, seed=1)), tmp_path / "tiny.int8.onnx")
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(int8)).graph.node)
    built = build_engine_file(RTX, int8, tmp_path / "tiny.int8.engine", spec, "fp32", BatchProfile(1, 2, 4))
    network = expected_network(spec)
    assert (built.inputs, built.outputs) == (network["inputs"], network["outputs"]) and built.targets == PORTABLE_TARGETS
    assert (tmp_path / "tiny.int8.engine").stat().st_size == built.serialized_bytes


def rejected_onnx(path: Path) -> Path:
    """The refiner's interface around an op no TensorRT importer knows (a custom domain)."""
    crops = helper.make_tensor_value_info("crops", TensorProto.UINT8, ["N", 32, 32, 3])
    boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 6])
    graph = helper.make_graph([helper.make_node("Warp", ["crops"], ["boxes"], domain="org.example")], "bad", [crops], [boxes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("org.example", 1)])
    onnx.save(model, str(path))
    return path


def test_an_op_tensorrt_rejects_fails_with_the_parser_error_in_one_line(tmp_path):
    spec = RefinerSpec(backbone="efficientnet_b0", input_size=32, class_names=("person",))
    engine = tmp_path / "bad.engine"
    with pytest.raises(BackendError, match=r"TensorRT-RTX 1\.\S+ could not parse bad\.onnx: .*Warp") as error:
        build_engine_file(RTX, rejected_onnx(tmp_path / "bad.onnx"), engine, spec, "fp16", BatchProfile(1, 1, 1))
    assert "\n" not in str(error.value) and not engine.exists()


@pytest.mark.parametrize(
    ("text", "targets"),
    [("portable", PORTABLE_TARGETS), ("sm75,SM86,sm86", ("sm75", "sm86")), ("current", ("current",))],
)
def test_targets_parse(text, targets):
    assert parse_targets(text) == targets


@pytest.mark.parametrize("text", ["sm90", "current,sm80", ""])
def test_bad_targets_name_the_valid_ones(text):
    with pytest.raises(ValueError, match="choose from sm75, sm80" if text != "current,sm80" else "combined"):
        parse_targets(text)


@pytest.mark.slow
def test_sm75_is_opt_in_and_builds_when_asked(tmp_path):
    """SM75 needs set_compute_capability like the others; asked for alone it still makes a real engine."""
    torch.manual_seed(0)
    spec = RefinerSpec(backbone="mobilenetv3_small_100", input_size=64, class_names=("person",))
    onnx_path = export_onnx(RefinerNet(spec).eval(), tmp_path / "tiny.onnx", 4, fp16=True)
    built = build_engine_file(RTX, onnx_path, tmp_path / "tiny.engine", spec, "fp16", BatchProfile(1, 2, 4), targets=("sm75",))
    assert built.targets == ("sm75",) and (tmp_path / "tiny.engine").stat().st_size == built.serialized_bytes
    assert "sm75" not in PORTABLE_TARGETS
