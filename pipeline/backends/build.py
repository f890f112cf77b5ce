"""Checkpoint (or a random-init paper backbone) -> ONNX -> TensorRT engine, each with a JSON sidecar.

    python build_engine.py --refiner runs/x/refiner.safetensors [--max-batch 32] [--precision fp16|fp32] [--out engines/]
    python build_engine.py --backbones b0,b1,b2,b3,b4 [--classes person]      # random-init: for speed benchmarks
    [--trt auto|rtx|tensorrt] [--compute-capability portable|sm75,sm80,...|current] [--triton-repo DIR]

Per model: export <name>.onnx (a checkpoint keeps its file name, a paper backbone gets its spec name; onnx.checker inside), run ONNX Runtime and torch on the same random
crops (FP32 must agree to 1e-4), then build <name>.engine with one batch profile 1..max:
with TensorRT-RTX (`tensorrt_rtx`, ahead of time, no GPU needed) for the given compute capabilities,
or with data-center TensorRT 10.x/11.x where it imports and a GPU is present (`--trt auto` prefers
it there; a timing cache is kept in the output folder). Strongly typed builds (RTX, 11.x) take an
FP16 ONNX for --precision fp16. Where the engine can run here (a GPU it was built for), it is
compared with torch too; otherwise the sidecar says why it was not executed. Sidecars are
<artifact>.json. Artifacts are overwritten: they are build outputs, reproducible from the
checkpoint with the command stored in each sidecar. --triton-repo DIR also writes a Triton model
repository: <name>/ (onnxruntime_onnx, the ONNX file) and, with an engine, <name>-trt/ (tensorrt_plan,
the engine for each compute capability it was built for); pipeline/model/triton_repo.py.
The command is `python build_engine.py` (its argparse and exit codes, at the repository root); the
code lives here, in the library, as `build_all(models_to_build(...), BuildOptions(...))`: it raises
on failure and says what it did through `BuildOptions.report`, so tests and benchmarks call it directly.
"""

from __future__ import annotations

import logging
import json
import os
import platform
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from pipeline.backends.base import FP32_TOLERANCE, BackendOptions, BackendUnavailable, RefinerBackend
from pipeline.backends.onnxruntime import OnnxRuntimeBackend
from pipeline.backends.registry import REGISTRY
from pipeline.core.errors import UsageError
from pipeline.backends.tensorrt import (
    CHOICES,
    CURRENT_TARGET,
    ENGINE_TOLERANCE,
    PORTABLE_TARGETS,
    PRECISIONS,
    BatchProfile,
    Flavour,
    TensorRTBackend,
    TensorRTUnavailable,
    build_engine_file,
    gpu_identity,
    parse_targets,
    select_flavour,
    sm_of,
)
from pipeline.backends.torch import TorchBackend
from pipeline.core.spec import BACKBONES, RefinerSpec, paper_spec
from pipeline.model.artifacts import ModelFile, file_sha256, sidecar_path, write_sidecar
from pipeline.model.checkpoint import load_refiner
from pipeline.model.defaults import ENGINES_DIR
from pipeline.model.export import export_onnx
from pipeline.model.net import RefinerNet
from pipeline.model.random_init import random_inputs, random_refiner
from pipeline.model.triton_repo import Batching, write_triton_repository

ONNX_TOLERANCE = FP32_TOLERANCE  # FP32 ONNX Runtime vs FP32 torch: only summation order differs
PARITY_BATCH = 8


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    """How to build: checked when made (a UsageError names the bad value); `report` receives one line per step."""

    out: Path = ENGINES_DIR
    max_batch: int = 32
    opt_batch: int = 8  # the batch TensorRT tunes for: detections per frame
    precision: str = "fp16"  # the engine's; the ONNX file is FP32
    trt: str = "auto"  # TensorRT flavour: tensorrt on a GPU, else tensorrt_rtx
    compute_capability: tuple[str, ...] = PORTABLE_TARGETS  # TensorRT-RTX targets
    triton_repo: Path | None = None  # also write a Triton model repository here
    triton_queue_timeout_ms: float = Batching.timeout_us / 1000
    seed: int = 0  # random-init weights, parity and calibration crops
    # Also write <name>.int8.onnx (NNCF), calibrated on these COCO sets' training images: (annotations, images[, detections]).
    int8_calibration: tuple[tuple[Path, ...], ...] = ()
    int8_crops: int = 300
    report: Callable[[str], None] = field(default=log.info, compare=False)

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.opt_batch < 1:
            raise UsageError("--max-batch and --opt-batch must be at least 1")
        if self.triton_queue_timeout_ms <= 0:
            raise UsageError("--triton-queue-timeout-ms must be positive")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.trt not in CHOICES:
            raise UsageError(f"TensorRT flavour {self.trt!r} is not one of {', '.join(CHOICES)}")
        parse_targets(",".join(self.compute_capability))  # raises UsageError naming the valid targets
        if any(len(paths) not in (2, 3) for paths in self.int8_calibration):
            raise UsageError("--int8-calibration takes ANNOTATIONS IMAGES [DETECTIONS]")
        if self.int8_crops < 1:
            raise UsageError("--int8-crops must be at least 1")


class ParityError(RuntimeError):
    """A built artifact computes something other than the torch model it came from."""


@dataclass(frozen=True)
class Source:
    """Where a model came from, in the words of the command that rebuilds it."""

    arguments: tuple[str, ...]
    checkpoint: Path | None = None

    def stem(self, spec: RefinerSpec) -> str:
        """Artifact name: a checkpoint keeps its own (refiner-person-...), a paper backbone gets its spec's."""
        return spec.name if self.checkpoint is None else self.checkpoint.stem


def package_versions() -> dict[str, str | None]:
    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"python": platform.python_version(), **{name: installed(name) for name in ("torch", "timm", "onnx", "onnxruntime")}}


@dataclass(frozen=True)
class Probe:
    """Random crops and the FP32 torch answer that every artifact of one model is compared with."""

    crops: np.ndarray
    vectors: np.ndarray
    expected: np.ndarray

    def difference(self, backend: RefinerBackend) -> float:
        return float(np.abs(backend.refine(self.crops, self.vectors).astype(np.float64) - self.expected).max())


def require_parity(artifact: Path, runtime: str, difference: float, tolerance: float) -> None:
    """A build that computes something else is removed with its sidecar, never left behind for a backend."""
    if difference > tolerance:
        artifact.unlink()
        sidecar_path(artifact).unlink(missing_ok=True)
        raise ParityError(f"{runtime} differs from torch by {difference:.1e} (> {tolerance:.0e}); {artifact.name} removed")


def build_all(models: Iterator[tuple[RefinerNet, Source]], options: BuildOptions) -> None:
    """Build every model; raises TensorRTUnavailable, ModelFileError, ParityError, BackendError or OSError on failure."""
    flavour, no_engine = None, None
    try:
        flavour = select_flavour(options.trt)
    except TensorRTUnavailable as error:
        if options.trt != "auto":
            raise
        no_engine = str(error)
    else:
        options = replace(options, trt=flavour.name)  # the rebuild command names the flavour auto chose
    if flavour is not None and CURRENT_TARGET in options.compute_capability and not torch.cuda.is_available():
        raise TensorRTUnavailable(f"--compute-capability {CURRENT_TARGET} needs a CUDA GPU; torch sees none")
    options.out.mkdir(parents=True, exist_ok=True)
    for model, source in models:
        onnx_path, engine_path = build_one(model, source, options, flavour)
        if options.triton_repo is not None:
            write_triton_models(options, source.stem(model.spec), model.spec, onnx_path, engine_path)
    if no_engine:
        options.report(f"no TensorRT engine built: {no_engine}; the ONNX files run with --backend onnxruntime or openvino")


def write_triton_models(
    options: BuildOptions, name: str, spec: RefinerSpec, onnx_path: Path, engine_path: Path | None
) -> None:
    """The model's Triton models; the engine's compute capabilities come from its sidecar (what was really built)."""
    targets: tuple[str, ...] = ()
    if engine_path is not None:
        sidecar = json.loads(sidecar_path(engine_path).read_text(encoding="utf-8"))
        built_for = sidecar.get("compute_capabilities") or [CURRENT_TARGET]  # None: data-center TensorRT, this GPU
        targets = tuple(sm_of(sidecar["gpu"]) if target == CURRENT_TARGET else target for target in built_for)
    batching = Batching(preferred_batch=options.opt_batch, timeout_us=round(options.triton_queue_timeout_ms * 1000))
    configs = write_triton_repository(
        options.triton_repo, name, spec, onnx_path, options.max_batch, engine_path, targets, batching
    )
    for config in configs:
        options.report(f"triton model {config.parent.name}: {config}")


def build_one(
    model: RefinerNet, source: Source, options: BuildOptions, flavour: Flavour | None
) -> tuple[Path, Path | None]:
    """Returns the ONNX file and the engine (None when no TensorRT built one)."""
    if options.int8_calibration and source.checkpoint is None:
        raise UsageError("--int8-calibration quantises a trained --refiner; random-init backbones have nothing to keep")
    spec = model.spec
    crops, vectors = random_inputs(spec, min(PARITY_BATCH, options.max_batch), options.seed)
    probe = Probe(crops, vectors, TorchBackend(model, "cpu", options.max_batch).refine(crops, vectors))
    common = {
        "spec": json.loads(spec.to_json()),
        "max_batch": options.max_batch,
        "checkpoint": None if source.checkpoint is None else str(source.checkpoint),
        "checkpoint_sha256": None if source.checkpoint is None else file_sha256(source.checkpoint),
        "versions": package_versions(),
        "rebuild_command": rebuild_command(source, options),
    }
    started = time.perf_counter()
    onnx_path = options.out / f"{source.stem(spec)}.onnx"
    say_if_overwriting(onnx_path, options.report)
    onnx_path = export_onnx(model, onnx_path, options.max_batch)
    seconds = time.perf_counter() - started
    difference = probe.difference(OnnxRuntimeBackend(ModelFile(onnx_path, spec), "cpu", options.max_batch, threads=os.cpu_count()))
    options.report(f"{onnx_path.stem}: {_shown(onnx_path)} in {seconds:.1f} s; ONNX Runtime vs torch max |diff| {difference:.1e}")
    require_parity(onnx_path, "ONNX Runtime", difference, ONNX_TOLERANCE)
    others = cpu_runtimes_parity(ModelFile(onnx_path, spec), options, probe)
    onnx_fields = {"artifact": onnx_path.name, "precision": "fp32", "profile": None, "tensorrt": None, "gpu": None}
    write_sidecar(
        onnx_path,
        {**common, **onnx_fields, "build_seconds": round(seconds, 2), "max_abs_difference_vs_torch": difference,
         "cpu_runtimes_vs_torch": others},
    )
    if options.int8_calibration:
        build_int8_onnx(onnx_path, source.checkpoint, spec, common, options)
    if flavour is None:
        return onnx_path, None
    build_one_engine(model, onnx_path, common, options, probe, flavour)
    return onnx_path, onnx_path.with_suffix(".engine")


def cpu_runtimes_parity(onnx: ModelFile, options: BuildOptions, probe: Probe) -> dict[str, dict]:
    """Every other registered runtime that runs this ONNX on the CPU, at its default precision, against torch.

    OpenVINO compiles the graph here, which also fills its compiled-model cache (engines/cache/openvino/).
    A runtime not installed here is recorded as such; one that computes something else fails the build.
    """
    found: dict[str, dict] = {}
    for entry in REGISTRY:
        if entry.runs != ".onnx" or "cpu" not in entry.devices or entry.name == OnnxRuntimeBackend.name:
            continue
        try:
            backend = entry.open(onnx, "cpu", options.max_batch, BackendOptions(threads=os.cpu_count()))
        except BackendUnavailable as error:
            found[entry.name] = {"skipped": str(error)}
            options.report(f"{onnx.path.stem}: {entry.label} not checked: {error}")
            continue
        difference = probe.difference(backend)
        precision = getattr(backend, "precision", "fp32")
        options.report(f"{onnx.path.stem}: {entry.label} ({precision}) vs torch max |diff| {difference:.1e}")
        require_parity(onnx.path, f"{entry.label} ({precision})", difference, backend.parity_tolerance)
        found[entry.name] = {"precision": precision, "max_abs_difference": difference, "tolerance": backend.parity_tolerance}
        backend.close()
    return found


def build_one_engine(
    model: RefinerNet, onnx_path: Path, common: dict, options: BuildOptions, probe: Probe, flavour: Flavour
) -> None:
    spec = model.spec
    engine_path = onnx_path.with_suffix(".engine")
    say_if_overwriting(engine_path, options.report)
    profile = BatchProfile(1, min(options.opt_batch, options.max_batch), options.max_batch)
    gpu = gpu_identity(torch.device("cuda")) if torch.cuda.is_available() else None
    timing_cache = None
    if not flavour.is_rtx():  # RTX times nothing ahead of time
        timing_cache = options.out / f"timing-trt{flavour.version}-{sm_of(gpu)}.cache"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        source_onnx = onnx_path
        if options.precision == "fp16" and flavour.strongly_typed():
            source_onnx = export_onnx(model, Path(scratch) / f"{spec.name}-fp16.onnx", options.max_batch, fp16=True)
        source_sha256, source_bytes = file_sha256(source_onnx), source_onnx.stat().st_size
        built = build_engine_file(
            flavour,
            source_onnx,
            engine_path,
            spec,
            options.precision,
            profile,
            targets=options.compute_capability,
            timing_cache=timing_cache,
        )
    seconds = time.perf_counter() - started
    fields = {
        **common,
        "artifact": engine_path.name,
        "precision": options.precision,
        "profile": profile._asdict(),
        "tensorrt": flavour.version,
        "tensorrt_flavour": flavour.name,
        "compute_capabilities": None if built.targets is None else list(built.targets),
        "gpu": gpu if not flavour.is_rtx() or CURRENT_TARGET in options.compute_capability else None,
        "network": {"inputs": built.inputs, "outputs": built.outputs},
        "serialized_bytes": built.serialized_bytes,
        "source_onnx_sha256": source_sha256,
        "source_onnx_bytes": source_bytes,
        "build_seconds": round(seconds, 2),
    }
    write_sidecar(engine_path, fields)  # the backend reads the spec and the build machine from it
    built_for = ",".join(built.targets) if built.targets else gpu["name"]
    shown = f"{engine_path.stem}: {_shown(engine_path)} ({options.precision}, {flavour.label}, {built_for}) in {seconds:.1f} s"
    not_run = engine_not_runnable_reason(flavour, built.targets, gpu)
    if not_run:
        options.report(f"{shown}; not executed: {not_run}")
        write_sidecar(engine_path, {**fields, "executed": False, "not_executed_because": not_run})
        return
    difference = probe.difference(TensorRTBackend(ModelFile.read(engine_path), "cuda", options.max_batch))
    options.report(f"{shown}; engine vs torch max |diff| {difference:.1e}")
    require_parity(engine_path, f"the {options.precision} engine", difference, ENGINE_TOLERANCE[options.precision])
    write_sidecar(engine_path, {**fields, "executed": True, "max_abs_difference_vs_torch": difference})


def engine_not_runnable_reason(flavour: Flavour, targets: tuple[str, ...] | None, gpu: dict | None) -> str | None:
    """Why a freshly built engine cannot be compared with torch on this machine (None: it can)."""
    if gpu is None:
        return f"{flavour.label} engines run on a CUDA GPU and torch sees none here"
    if targets is not None and targets != (CURRENT_TARGET,) and sm_of(gpu) not in targets:
        return f"this GPU ({gpu['name']}, {sm_of(gpu)}) is not among the targets {','.join(targets)}"
    return None


def build_int8_onnx(onnx_path: Path, checkpoint: Path, spec: RefinerSpec, common: dict, options: BuildOptions) -> Path:
    """<stem>.int8.onnx beside the FP32 ONNX: NNCF QDQ of the checkpoint, calibrated on the training
    images of the given sets (quantised once per checkpoint, settings and crops: engines/cache/).

    Not a default anywhere (held-out AP: benchmarks/results/cpu-2core/int8/); run it with --backend openvino.
    """
    from pipeline.data.calibration_crops import CalibrationSource, calibration_crops  # cv2, COCO: only when asked
    from pipeline.model.quantize import Int8Settings, cached_int8_onnx, int8_path

    sources = [CalibrationSource(*(Path(part) for part in paths)) for paths in options.int8_calibration]
    started = time.perf_counter()
    calibration = calibration_crops(sources, spec, options.int8_crops, seed=options.seed)
    int8 = int8_path(onnx_path)
    say_if_overwriting(int8, options.report)
    settings = Int8Settings()
    shutil.copyfile(cached_int8_onnx(checkpoint, calibration, settings), int8)  # NNCF takes minutes: once per data
    seconds = time.perf_counter() - started
    options.report(f"{int8.stem}: {_shown(int8)} from {len(calibration)} training crops in {seconds:.1f} s")
    fields = {
        "artifact": int8.name, "precision": "int8", "profile": None, "tensorrt": None, "gpu": None,
        "int8": {"settings": asdict(settings), "calibration": [[str(path) for path in paths] for paths in options.int8_calibration],
                 "crops": len(calibration), "calibration_sha256": calibration.digest()},
        "build_seconds": round(seconds, 2),
    }
    write_sidecar(int8, {**common, **fields})
    return int8


def rebuild_command(source: Source, options: BuildOptions) -> str:
    settings = {
        "--max-batch": options.max_batch,
        "--opt-batch": options.opt_batch,
        "--precision": options.precision,
        "--trt": options.trt,
        "--compute-capability": ",".join(options.compute_capability),
        "--seed": options.seed,
        "--out": options.out,
    }
    arguments = [*source.arguments, *(str(part) for setting in settings.items() for part in setting)]
    for paths in options.int8_calibration:
        arguments += ["--int8-calibration", *(str(path) for path in paths), "--int8-crops", str(options.int8_crops)]
    return shlex.join(["python", "build_engine.py", *arguments])


def say_if_overwriting(path: Path, report: Callable[[str], None]) -> None:
    if path.exists():
        report(f"overwriting {path} (and its sidecar)")


def _shown(path: Path) -> str:
    return f"{path} ({path.stat().st_size / 1e6:.1f} MB)"


def models_to_build(
    refiner: Path | None = None, backbones: tuple[str, ...] = (), classes: tuple[str, ...] = ("person",), seed: int = 0
) -> Iterator[tuple[RefinerNet, Source]]:
    """A checkpoint, or random-init paper backbones for `classes`; one at a time, so five never sit in memory together."""
    if refiner is not None:
        yield load_refiner(refiner), Source(("--refiner", str(refiner)), refiner)
        return
    unknown = [name for name in backbones if name not in BACKBONES]
    if unknown or not backbones:
        raise UsageError(f"{','.join(backbones)!r} names no backbone list; choose from {','.join(BACKBONES)}")
    for short in backbones:
        spec = paper_spec(short, classes)
        yield random_refiner(spec, seed), Source(("--backbones", short, "--classes", ",".join(classes)))
