"""The CPU runtimes side by side: `python -m benchmarks latency --runtimes onnxruntime:fp32,openvino:fp32,openvino:bf16`.

Why one run: on a shared machine only figures measured together compare. Every runtime gets the
SAME real crops (COCO people cut as the pipeline cuts them, benchmarks.real_crops), the same
thread count, and the calls are interleaved (runtime A, B, C, A, B, C, ...) so load that comes and
goes hits all alike. Reported: p50/p95 ms per call at each box count and input size, and each
median's speed-up over ONNX Runtime FP32. The refiner at its own size is the committed (or given)
checkpoint; smaller sizes are the same architecture with random weights (speed does not depend
on them). A runtime:precision that cannot run here (not installed, no BF16, no INT8 model yet) is a
row that says why, so the command stays the same when it can.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.real_crops import real_crops
from benchmarks.report import environment, markdown_table, write_report
from pipeline.backends import BackendOptions, RefinerBackend
from pipeline.backends.base import default_cpu_threads
from pipeline.core.errors import BBRefinementError
from pipeline.model.artifacts import ModelFile
from pipeline.model.checkpoint import save_refiner
from pipeline.model.defaults import ENGINES_DIR, REPO_ROOT, default_refiner

BASELINE = "onnxruntime:fp32"
DEFAULT_COCO = REPO_ROOT.parent / "shared" / "data" / "coco-person"
SIZE_MODELS_DIR = ENGINES_DIR / "cache" / "benchmarks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtimes", default="",
        help="compare CPU runtimes instead of per-stage latency: runtime:precision list, e.g. "
        f"{BASELINE},openvino:fp32,openvino:bf16 (openvino:int8 where a quantised model exists)",
    )
    parser.add_argument("--sizes", default="native,128", help="--runtimes: input sizes; native = the refiner's own")
    parser.add_argument("--threads", type=int, default=default_cpu_threads(), help="--runtimes: intra-op threads of every runtime")
    parser.add_argument("--coco-dir", type=Path, default=DEFAULT_COCO, help="--runtimes: COCO person set the real crops come from")


def run_comparison(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    wanted = [tuple(item.strip().split(":", 1)) for item in args.runtimes.split(",") if item.strip()]
    if (*BASELINE.split(":"),) not in wanted:
        wanted.insert(0, tuple(BASELINE.split(":")))
    counts = sorted(int(count) for count in args.boxes.split(","))
    checkpoint = ModelFile.read(args.refiner or default_refiner())
    rows: list[dict[str, Any]] = []
    for size in [size.strip() for size in args.sizes.split(",") if size.strip()]:
        model = checkpoint if size == "native" else ModelFile.read(resized(checkpoint, int(size)))
        crops, vectors = real_crops(model.spec, max(counts), args.coco_dir, seed=args.seed)
        backends = {f"{name}:{precision}": opened(name, precision, model, max(counts), args.threads) for name, precision in wanted}
        print(f"timing {len(backends)} runtimes at {model.spec.input_size} px ...", flush=True)
        timings = interleaved(backends, crops, vectors, counts, args.frames, args.warmup)
        for label, backend in backends.items():
            for count in counts:
                row: dict[str, Any] = {"input_size": model.spec.input_size, "runtime": label, "boxes": count}
                if isinstance(backend, str):
                    row["skipped"] = backend
                else:
                    samples = timings[label][count]
                    row["ms_p50"], row["ms_p95"] = (round(float(value), 2) for value in np.percentile(samples, [50, 95]))
                rows.append(row)
            if not isinstance(backend, str):
                backend.close()
    for row in rows:
        base = next(r for r in rows if (r["input_size"], r["boxes"], r["runtime"]) == (row["input_size"], row["boxes"], BASELINE))
        if "ms_p50" in row and "ms_p50" in base:
            row["speedup_vs_onnxruntime_fp32"] = round(base["ms_p50"] / row["ms_p50"], 2)
    results = {
        "settings": {"threads": args.threads, "calls": args.frames, "warmup": args.warmup, "crops": f"{max(counts)} real COCO person crops",
                     "refiner": str(checkpoint.path), "baseline": BASELINE},
        "keys": "per row: input_size, runtime (name:precision), boxes, ms_p50, ms_p95, speedup_vs_onnxruntime_fp32 (its p50 / this p50), or skipped",
        "results": rows,
    }
    write_report(args.out, "CPU runtimes side by side (same crops, same threads, interleaved)", env, results, comparison_markdown(rows) + "\n")


def opened(name: str, precision: str, model: ModelFile, max_batch: int, threads: int) -> RefinerBackend | str:
    """The runtime at that precision, or why it cannot run here."""
    from pipeline.backends.registry import BACKENDS, local_device

    try:
        if name not in BACKENDS:
            return f"no runtime named {name}"
        if name == "onnxruntime" and precision != "fp32":
            return "ONNX Runtime runs the FP32 graph only"
        if precision == "int8":  # the INT8 (QDQ) backbone, the float heads in the runtime's best float precision
            quantized = int8_model(model)
            if quantized is None:
                return (f"no {model.path.stem}.int8.onnx beside {model.path.name} or in {ENGINES_DIR}; "
                        f"python build_engine.py --refiner {model.path} --int8-calibration ... makes it")
            model, precision = quantized, None
        options = BackendOptions(threads=threads, precision=None if name == "onnxruntime" else precision)
        return BACKENDS[name].open(model, local_device("cpu"), max_batch, options)
    except BBRefinementError as error:
        return str(error)


def int8_model(model: ModelFile) -> ModelFile | None:
    """build_engine.py's <stem>.int8.onnx of this refiner, beside it or in engines/; None when not built."""
    name = f"{model.path.stem}.int8.onnx"
    for path in (model.path.with_name(name), ENGINES_DIR / name):
        if path.is_file():
            return ModelFile.read(path)
    return None


def interleaved(
    backends: dict[str, RefinerBackend | str], crops: np.ndarray, vectors: np.ndarray, counts: list[int], calls: int, warmup: int
) -> dict[str, dict[int, list[float]]]:
    """ms per call of every runtime at every box count, calls taken in turn across runtimes."""
    runnable = {label: backend for label, backend in backends.items() if not isinstance(backend, str)}
    timings: dict[str, dict[int, list[float]]] = {label: {count: [] for count in counts} for label in runnable}
    for index in range(warmup + calls + 1):
        if index == warmup:  # the steady state a long run sees: OpenVINO's static-shape copies compiled, then one more round
            for backend in runnable.values():
                backend.settle()
        for count in counts:
            for label, backend in runnable.items():
                started = time.perf_counter()
                backend.refine(crops[:count], vectors[:count])
                if index > warmup:
                    timings[label][count].append((time.perf_counter() - started) * 1000.0)
    return timings


def resized(checkpoint: ModelFile, size: int) -> Path:
    """The same architecture at `size` px with random weights, saved once under engines/cache/benchmarks/."""
    from pipeline.model.random_init import random_refiner

    spec = replace(checkpoint.spec, input_size=size)
    path = SIZE_MODELS_DIR / f"{spec.name}-random.safetensors"
    if not path.is_file():
        save_refiner(random_refiner(spec), path)
    return path


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    table = [
        [row["input_size"], row["boxes"], row["runtime"], row.get("ms_p50"), row.get("ms_p95"),
         f"{row['speedup_vs_onnxruntime_fp32']:.2f}x" if "speedup_vs_onnxruntime_fp32" in row else row.get("skipped", "n/a")]
        for row in rows
    ]
    return markdown_table(["input px", "boxes", "runtime:precision", "p50 ms", "p95 ms", f"speed-up vs {BASELINE} (p50)"], table)
