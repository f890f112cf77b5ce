"""Engine build time and size per model: TensorRT-RTX builds ahead of time, so this is measured on any CPU.

Shared by `benchmarks latency --engine-builds` and the GPU suite (which then runs what it built).
The ONNX export (FP16 for strongly typed flavours) is timed apart from TensorRT's own build.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks.report import markdown_table
import torch

from pipeline.backends.tensorrt import CURRENT_TARGET, PORTABLE_TARGETS, BatchProfile, Flavour, build_engine_file, gpu_identity
from pipeline.model.artifacts import write_sidecar
from pipeline.model.export import export_onnx
from pipeline.model.net import RefinerNet


def build_and_measure(
    label: str,
    model: RefinerNet,
    precision: str,
    flavour: Flavour,
    out_dir: Path,
    targets: tuple[str, ...] = PORTABLE_TARGETS,
    max_batch: int = 32,
) -> dict[str, Any]:
    """Export + build one engine into out_dir (with a sidecar the backend accepts); its row of figures."""
    spec = model.spec
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{spec.name}-{precision}"
    started = time.perf_counter()
    fp16 = precision == "fp16" and flavour.strongly_typed()
    onnx_path = export_onnx(model, out_dir / f"{stem}.onnx", max_batch, fp16=fp16)
    exported = time.perf_counter()
    engine = out_dir / f"{stem}.engine"
    profile = BatchProfile(1, min(8, max_batch), max_batch)
    built = build_engine_file(flavour, onnx_path, engine, spec, precision, profile, targets=targets)
    seconds = time.perf_counter() - exported
    write_sidecar(
        engine,
        {
            "spec": json.loads(spec.to_json()),
            "artifact": engine.name,
            "precision": precision,
            "profile": profile._asdict(),
            "tensorrt": flavour.version,
            "tensorrt_flavour": flavour.name,
            "compute_capabilities": None if built.targets is None else list(built.targets),
            "gpu": gpu_identity(torch.device("cuda")) if not flavour.is_rtx() or CURRENT_TARGET in targets else None,
            "serialized_bytes": built.serialized_bytes,
            "rebuild_command": f"python -m benchmarks (engine of {label}, {precision})",
        },
    )
    return {
        "model": label,
        "input_size": spec.input_size,
        "precision": precision,
        "tensorrt": flavour.label,
        "targets": ",".join(built.targets) if built.targets else "this GPU",
        "onnx_export_s": round(exported - started, 2),
        "build_s": round(seconds, 2),
        "onnx_mb": round(onnx_path.stat().st_size / 1e6, 1),
        "engine_mb": round(built.serialized_bytes / 1e6, 1),
        "engine": str(engine),
    }


def builds_markdown(rows: list[dict[str, Any]]) -> str:
    header = ["model", "size", "precision", "TensorRT", "targets", "ONNX export s", "build s", "ONNX MB", "engine MB"]
    keys = ["model", "input_size", "precision", "tensorrt", "targets", "onnx_export_s", "build_s", "onnx_mb", "engine_mb"]
    return markdown_table(header, [[row[key] for key in keys] for row in rows])
