"""Per-stage refinement latency per frame, per backbone and box count (paper section 5, "Speed").

Each measured frame draws fresh boxes in a fixed-size frame and times, separately:
- crop:      windows + mixture vectors + pixel crops, one thread (the paper's "preparation of crops");
- crop_pool: the same with the CpuCropper thread pool the pipeline uses;
- h2d / d2h: the crop batch to the GPU and the outputs back (null unless the backend runs on CUDA);
- infer:     one batched backend call;
- decode:    FrameRefiner.decode_outputs, what ships: the policy with the refiner's calibration, window ->
             frame coordinates, the blend towards the input box, rescoring;
- overhead:  the whole FrameRefiner call (prepare + finish, pooled crops), what a frame really pays.
With --engine-builds fp16[,fp32], each model's TensorRT-RTX engine is also built (portable targets,
ahead of time: no GPU needed) and its export time, build time and size reported.
Warm-up frames are run first and not recorded. Speed does not depend on the weights, so without
--refiner the paper's backbones are random-init models at their native sizes, saved once under
engines/cache/benchmarks/ (open_backend then exports and caches their ONNX once).
With --runtimes, the CPU runtimes are compared instead, side by side on the same real crops
(benchmarks/cpu_runtimes.py).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks.cpu_runtimes import add_arguments as add_runtime_comparison_arguments
from benchmarks.cpu_runtimes import run_comparison
from benchmarks.engine_builds import builds_markdown
from benchmarks.report import environment, markdown_table, write_report
from pipeline.backends import KINDS, RefinerBackend, open_backend
from pipeline.core.geometry import crop_windows, mixture_vectors
from pipeline.core.spec import RefinerSpec, paper_spec
from pipeline.core.types import Detections, Frame
from pipeline.data.synthetic import parse_size
from pipeline.model.checkpoint import save_refiner
from pipeline.model.defaults import ENGINES_DIR
from pipeline.refine.crops import CpuCropper
from pipeline.refine.refiner import build_frame_refiner

BENCHMARK_MODELS_DIR = ENGINES_DIR / "cache" / "benchmarks"
CLASS_NAMES = ("person",)
STAGES = ("crop", "crop_pool", "h2d", "infer", "d2h", "decode", "overhead")
MIN_BOX_SIDE, MAX_BOX_SIDE = 24, 360  # pedestrians to close-ups in a 720p frame

# Paper, section 5: crops prepared on the CPU in 32 ms per image; GPU inference 23 ms (B1), 44 ms (B3).
PAPER_CROP_MS = 32.0
PAPER_INFER_MS = {"b1": 23.0, "b3": 44.0}
PAPER_FPS = {"b1": 18.0, "b3": 13.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbones", default="b0,b1,b3", help="paper backbones (random-init, native sizes)")
    parser.add_argument("--boxes", default="1,8,32", help="detections per frame, comma separated")
    parser.add_argument("--backend", default="onnxruntime", choices=KINDS)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when available")
    parser.add_argument("--frame", default="1280x720", help="frame size WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=20, help="measured frames per case")
    parser.add_argument("--warmup", type=int, default=3, help="unrecorded frames first")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="crop pool threads")
    parser.add_argument(
        "--refiner",
        type=Path,
        default=None,
        help="measure this model (.safetensors/.onnx/.engine) instead of the paper backbones",
    )
    parser.add_argument(
        "--input-sizes", default="",
        help="with --refiner: also time random-init copies of its architecture at these input sizes, e.g. 128 "
        "(speed does not depend on the weights)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--crops-only",
        action="store_true",
        help="time crop preparation alone (no model between frames: the paper's 32 ms figure, caches and cores not shared)",
    )
    parser.add_argument(
        "--engine-builds",
        default="",
        help="also build a TensorRT-RTX engine per model at these precisions (e.g. fp16,fp32) and report time and size",
    )
    parser.add_argument("--out", type=Path, default=None, help="report JSON (a .md is written beside it)")
    add_runtime_comparison_arguments(parser)


def main(args: argparse.Namespace) -> None:
    if args.runtimes:
        run_comparison(args)
        return
    env = environment(args.argv)
    width, height = parse_size(args.frame)
    box_counts = [int(count) for count in args.boxes.split(",")]
    if args.crops_only:
        crops_only(args, env, (width, height), box_counts)
        return
    if args.refiner:
        models = {Path(args.refiner).stem: Path(args.refiner)}
        for size in (int(size) for size in args.input_sizes.split(",") if size.strip()):
            models[f"{Path(args.refiner).stem} at {size} px (random init)"] = resized_checkpoint(Path(args.refiner), size)
    else:
        models = {name: random_checkpoint(name) for name in args.backbones.split(",")}
    rows = []
    for label, checkpoint in models.items():
        backend = open_backend(args.backend, checkpoint, args.device, max_batch=max(box_counts))
        try:
            for count in box_counts:
                print(f"measuring {label} with {count} boxes ...", flush=True)
                stages = measure(backend, (width, height), count, args.frames, args.warmup, args.workers, args.seed)
                rows.append({"backbone": label, "input_size": backend.spec.input_size, "boxes": count, **stages})
        finally:
            backend.close()
    builds = engine_builds(models, args.engine_builds)
    results = {
        "engine_builds": builds,
        "settings": {
            "backend": args.backend,
            "device": str(backend.device),
            "frame": [width, height],
            "frames": args.frames,
            "warmup": args.warmup,
            "crop_pool_workers": args.workers,
        },
        "keys": "per row: backbone, input_size, boxes, then <stage>_ms_p50 and <stage>_ms_p95 for stages " + ", ".join(STAGES),
        "results": rows,
    }
    markdown = latency_markdown(rows)
    if builds:
        markdown += "\n\n## TensorRT-RTX engine builds (ahead of time, on this machine's CPU)\n\n" + builds_markdown(builds)
    write_report(args.out, "Refinement latency per frame", env, results, markdown)


def engine_builds(models: dict[str, Path], precisions: str) -> list[dict[str, Any]]:
    """Build time and size of each model's TensorRT-RTX engine per precision, in a scratch folder (engines are not kept)."""
    from benchmarks.engine_builds import build_and_measure
    from pipeline.backends.tensorrt import flavour_named
    from pipeline.model.checkpoint import load_refiner

    wanted = [name.strip() for name in precisions.split(",") if name.strip()]
    if not wanted:
        return []
    if unbuildable := [str(path) for path in models.values() if path.suffix != ".safetensors"]:
        raise SystemExit(f"--engine-builds needs a .safetensors refiner (the FP16 ONNX is exported from it), not {unbuildable[0]}")
    flavour = flavour_named("rtx")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as scratch:
        for label, path in models.items():
            for precision in wanted:
                print(f"building the {precision} TensorRT-RTX engine of {label} ...", flush=True)
                rows.append(build_and_measure(label, load_refiner(path), precision, flavour, Path(scratch)))
                Path(rows[-1].pop("engine")).unlink()
    return rows


def crops_only(args: argparse.Namespace, env: dict[str, Any], frame_size: tuple[int, int], box_counts: list[int]) -> None:
    """Crop preparation per frame (windows, vectors, pixels) for each paper backbone's input size, nothing else."""
    width, height = frame_size
    rng = np.random.default_rng(args.seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    rows = []
    for name in args.backbones.split(","):
        spec = paper_spec(name, CLASS_NAMES)
        single, pool = CpuCropper(spec.input_size, workers=1), CpuCropper(spec.input_size, workers=args.workers)
        try:
            for count in box_counts:
                samples: dict[str, list[float]] = defaultdict(list)
                for index in range(args.warmup + args.frames):
                    boxes = random_boxes(rng, count, width, height)
                    timings = {"crop": timed(prepare_crops, spec, image, boxes, single)[1],
                               "crop_pool": timed(prepare_crops, spec, image, boxes, pool)[1]}
                    if index >= args.warmup:
                        for stage, milliseconds in timings.items():
                            samples[stage].append(milliseconds)
                row: dict[str, Any] = {"backbone": name, "input_size": spec.input_size, "boxes": count}
                for stage in ("crop", "crop_pool"):
                    row[f"{stage}_ms_p50"], row[f"{stage}_ms_p95"] = percentiles(samples[stage])
                rows.append(row)
        finally:
            single.close(), pool.close()
    results = {
        "settings": {"frame": [width, height], "frames": args.frames, "warmup": args.warmup, "crop_pool_workers": args.workers},
        "keys": "per row: backbone, input_size, boxes, crop_ms_p50/p95 (1 thread), crop_pool_ms_p50/p95",
        "results": rows,
    }
    table = markdown_table(
        ["backbone", "size", "boxes", "crop p50/p95 ms (1 thread)", f"crop pool p50/p95 ms ({args.workers})", "best p50 / paper 32 ms"],
        [[r["backbone"], r["input_size"], r["boxes"], f"{r['crop_ms_p50']:.2f} / {r['crop_ms_p95']:.2f}",
          f"{r['crop_pool_ms_p50']:.2f} / {r['crop_pool_ms_p95']:.2f}",
          ratio(min(r["crop_ms_p50"], r["crop_pool_ms_p50"]), PAPER_CROP_MS)] for r in rows],
    )
    write_report(args.out, "Crop preparation per frame (no model running)", env, results, table + "\n")


def random_checkpoint(short_name: str, models_dir: Path = BENCHMARK_MODELS_DIR) -> Path:
    """A random-init paper backbone saved once (same seed, same file), so its ONNX is exported once."""
    from pipeline.model.random_init import random_refiner

    spec = paper_spec(short_name, CLASS_NAMES)
    path = Path(models_dir) / f"{spec.name}-random.safetensors"
    if not path.is_file():
        save_refiner(random_refiner(spec), path)
    return path


def resized_checkpoint(refiner: Path, input_size: int, models_dir: Path = BENCHMARK_MODELS_DIR) -> Path:
    """A random-init copy of a refiner's architecture at another input size, saved once like random_checkpoint."""
    from pipeline.model.artifacts import ModelFile
    from pipeline.model.random_init import random_refiner

    spec = replace(ModelFile.of(refiner).spec, input_size=input_size)
    path = Path(models_dir) / f"{spec.name}-random.safetensors"
    if not path.is_file():
        save_refiner(random_refiner(spec), path)
    return path


def random_boxes(rng: np.random.Generator, count: int, width: int, height: int) -> np.ndarray:
    """Boxes inside the frame, as a detector outputs them; padded windows of boxes near an edge still leave it."""
    sides = np.minimum(rng.uniform(MIN_BOX_SIDE, MAX_BOX_SIDE, size=(count, 2)) * [1.0, 1.6], [width, height])  # taller than wide
    top_left = rng.uniform(0, 1, size=(count, 2)) * ([width, height] - sides)
    return np.concatenate([top_left, top_left + sides], axis=1)


def measure(
    backend: RefinerBackend, frame_size: tuple[int, int], count: int, frames: int, warmup: int, workers: int, seed: int
) -> dict[str, float | None]:
    """p50/p95 in ms of every stage over `frames` frames of `count` boxes, after `warmup` frames."""
    spec = backend.spec
    width, height = frame_size
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    frame = Frame(0, image, None, "benchmark")
    single, pool = CpuCropper(spec.input_size, workers=1), CpuCropper(spec.input_size, workers=workers)
    refiner = build_frame_refiner(backend, CLASS_NAMES, workers=workers)
    on_cuda = backend.device == "cuda"
    samples: dict[str, list[float]] = defaultdict(list)
    try:
        for index in tqdm(range(warmup + frames), desc=f"{spec.name}, {count} boxes", unit="frame", leave=False):
            if index == warmup:
                backend.settle()  # OpenVINO's static-shape copy of this batch size: time the steady state
            boxes = random_boxes(rng, count, width, height)
            timings: dict[str, float] = {}
            _, timings["crop"] = timed(prepare_crops, spec, image, boxes, single)
            (_, vectors, crops), timings["crop_pool"] = timed(prepare_crops, spec, image, boxes, pool)
            outputs, timings["infer"] = timed(backend.refine, crops, vectors)
            if on_cuda:
                timings["h2d"], timings["d2h"] = transfer_ms(crops, outputs)
            detections = Detections(boxes, np.ones(count), np.zeros(count), CLASS_NAMES)
            job = refiner.prepare(frame, detections)  # the same windows; its crops are not used
            _, timings["decode"] = timed(refiner.decode_outputs, job, outputs[job.selected])
            _, timings["overhead"] = timed(refiner, frame, detections)
            if index >= warmup:
                for stage, milliseconds in timings.items():
                    samples[stage].append(milliseconds)
    finally:
        for cropper in (single, pool, refiner.cropper):
            cropper.close()
    summary: dict[str, float | None] = {}
    for stage in STAGES:
        summary[f"{stage}_ms_p50"], summary[f"{stage}_ms_p95"] = percentiles(samples.get(stage, []))
    return summary


def timed(function: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, (time.perf_counter() - started) * 1000.0


def prepare_crops(
    spec: RefinerSpec, image: np.ndarray, boxes: np.ndarray, cropper: CpuCropper
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CPU preparation FrameRefiner.prepare does: windows, mixture vectors, pixel crops."""
    windows = crop_windows(boxes, spec.padding)
    vectors = mixture_vectors(np.zeros(len(boxes)), boxes, windows, spec.num_classes)
    return windows, vectors, cropper.crop(image, windows)


def transfer_ms(crops: np.ndarray, outputs: np.ndarray) -> tuple[float, float]:
    """Synchronised host-to-device time of the crop batch and device-to-host time of the outputs."""
    import torch

    torch.cuda.synchronize()
    _, host_to_device = timed(lambda: (torch.from_numpy(crops).cuda(), torch.cuda.synchronize()))
    device_outputs = torch.from_numpy(outputs).cuda()
    torch.cuda.synchronize()
    _, device_to_host = timed(device_outputs.cpu)
    return host_to_device, device_to_host


def percentiles(samples_ms: list[float]) -> tuple[float | None, float | None]:
    if not samples_ms:
        return None, None
    p50, p95 = np.percentile(samples_ms, [50, 95])
    return round(float(p50), 3), round(float(p95), 3)


def latency_markdown(rows: list[dict[str, Any]]) -> str:
    stage_rows = [
        [row["backbone"], row["input_size"], row["boxes"]]
        + [f"{fmt(row[f'{stage}_ms_p50'])} / {fmt(row[f'{stage}_ms_p95'])}" for stage in STAGES]
        for row in rows
    ]
    header = ["model", "size", "boxes", *(f"{stage} p50/p95 ms" for stage in STAGES)]
    return (
        "## Per-stage latency per frame\n\n"
        + markdown_table(header, stage_rows)
        + "\n\n## Beside the paper (its figures are per image, box count unstated; ours at the box count nearest 8)\n\n"
        + markdown_table(["figure", "paper", "ours (p50)", "ours / paper"], paper_comparison(rows))
    )


def paper_comparison(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Our figures beside the paper's: crop preparation, inference, overhead and the implied FPS."""
    if not rows:
        return []
    target = min({row["boxes"] for row in rows}, key=lambda count: abs(count - 8))
    by_model = {row["backbone"]: row for row in rows if row["boxes"] == target}
    comparison: list[list[Any]] = []
    for label, row in by_model.items():
        prefix = f"{label}, {target} boxes:"
        figures = [("crop preparation (1 thread)", PAPER_CROP_MS, row["crop_ms_p50"])]
        figures.append(("crop preparation (pool)", PAPER_CROP_MS, row["crop_pool_ms_p50"]))
        if label in PAPER_INFER_MS:
            overhead = row["overhead_ms_p50"]
            figures.append(("inference (paper: GPU)", PAPER_INFER_MS[label], row["infer_ms_p50"]))
            figures.append(("overhead per frame (paper: crops + GPU)", PAPER_CROP_MS + PAPER_INFER_MS[label], overhead))
            figures.append(("refinement-only FPS", PAPER_FPS[label], round(1000.0 / overhead, 1) if overhead else None))
        comparison += [[f"{prefix} {name}", paper, ours, ratio(ours, paper)] for name, paper, ours in figures]
    return comparison


def ratio(ours: float | None, paper: float) -> float | None:
    return None if ours is None else round(ours / paper, 3)


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
