"""The GPU suite in one command, for a lent GPU machine: `python -m benchmarks gpu --out DIR` (about 8 minutes).

Parts, each reported as ran, skipped (with its reason) or failed (with the error, one line):
1. cuda_tests:   the CUDA tests through pytest (torch CUDA backend, TensorRT backend, GPU cropper parity);
2. torch_fp16:   torch FP16 inference with and without CUDA graphs, per box count, for the paper's
                 B0/B1/B3 (random init, native sizes) and the committed person refiner;
3. gpu_crops:    GPU cropper per frame (1280x720, 240 px crops: B1's size) beside the CPU pool;
4. tensorrt_rtx: FP16 engines built with TensorRT-RTX for this GPU (`--compute-capability current`)
                 and run per box count; where TensorRT refuses (RTX has no sm90), its exact words;
5. fps:          end-to-end pipeline FPS with and without refinement on the real clip
                 (../shared/video), YOLOv8n detector; with the RTX engine too where it ran.
Without CUDA (CI) or with --dry it runs dry: every CUDA part is skipped with its reason, the rest
really runs (engine builds for the portable targets, the FPS runs on the CPU). The report (md +
json in DIR) puts the paper's figures beside ours: B1 23 ms and B3 44 ms GPU inference, 32 ms crop
preparation, 18 and 13 FPS.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.engine_builds import build_and_measure, builds_markdown
from benchmarks.latency import PAPER_CROP_MS, PAPER_FPS, PAPER_INFER_MS, percentiles, random_boxes
from benchmarks.report import environment, markdown_table, write_report
from pipeline.core.geometry import crop_windows
from pipeline.core.spec import paper_spec
from pipeline.model.checkpoint import load_refiner
from pipeline.model.defaults import ENGINES_DIR, REPO_ROOT
from pipeline.model.net import RefinerNet

SHARED = REPO_ROOT.parent / "shared"
DEFAULT_CLIP = SHARED / "video" / "one-by-one-person-detection.mp4"
DEFAULT_DETECTOR = SHARED / "models" / "yolov8n-coco.pt"
FALLBACK_DETECTOR = ENGINES_DIR / "demo-detector-yolov8n.pt"
CUDA_TESTS = (
    "tests/pipeline/backends/test_torch_cuda.py",
    "tests/pipeline/backends/test_tensorrt_backend.py",
    "tests/pipeline/refine/test_gpu_crops.py",
)
FRAME = (1280, 720)
CROP_SIZE = 240  # B1's input: the paper's 32 ms crop figure is for its B1/B3 refiners


@dataclass
class Part:
    """One part of the suite: what happened, why, and its figures."""

    name: str
    status: str  # ran | skipped | failed
    reason: str | None = None
    seconds: float = 0.0
    results: Any = None


def default_refiner() -> Path:
    return next(ENGINES_DIR.glob("refiner-person-*.safetensors"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu-suite.json and gpu-suite.md")
    parser.add_argument("--dry", action="store_true", help="skip every CUDA part even on a GPU (what CI runs without one)")
    parser.add_argument("--backbones", default="b0,b1,b3", help="paper backbones for torch FP16 (b1,b3 also get engines); '' for none")
    parser.add_argument("--boxes", default="1,8,32", help="detections per frame, comma separated")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per case (after 10 warm-up calls)")
    parser.add_argument("--refiner", type=Path, default=None, help="default: the committed engines/refiner-person-*.safetensors")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="video for the FPS runs (default: ../shared/video clip)")
    parser.add_argument("--detector", type=Path, default=None, help=f"default: {DEFAULT_DETECTOR} where present")
    parser.add_argument("--fps-frames", type=int, default=300, help="frames per FPS run")
    parser.add_argument("--cuda-tests-timeout", type=int, default=300, help="seconds for the CUDA tests")


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    no_cuda = "--dry was given" if args.dry else (None if torch.cuda.is_available() else "torch sees no CUDA GPU")
    counts = [int(count) for count in args.boxes.split(",")]
    backbones = [name.strip() for name in args.backbones.split(",") if name.strip()]
    refiner = args.refiner or default_refiner()
    models = {name: lambda name=name: random_model(name) for name in backbones}
    models[f"{refiner.stem} (committed)"] = lambda: load_refiner(refiner)
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as scratch:  # engines and FPS outputs are not kept
        parts = run_parts(args, models, counts, refiner, Path(scratch), no_cuda)
    results = {"dry": no_cuda is not None, "dry_reason": no_cuda, "parts": [asdict(part) for part in parts]}
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args.out / "gpu-suite.json", "GPU suite", env, results, suite_markdown(parts, no_cuda))


def run_parts(
    args: argparse.Namespace, models: dict[str, Callable[[], RefinerNet]], counts: list[int], refiner: Path, work: Path, no_cuda: str | None
) -> list[Part]:
    parts = [
        run_part("cuda_tests", no_cuda, lambda: cuda_tests(args.cuda_tests_timeout)),
        run_part("torch_fp16", no_cuda, lambda: torch_fp16(models, counts, args.iterations)),
        run_part("gpu_crops", no_cuda, lambda: gpu_crops(counts, args.iterations)),
    ]
    engine_models = {label: make for label, make in models.items() if label in ("b1", "b3") or "committed" in label}
    parts.append(run_part("tensorrt_rtx", None, lambda: tensorrt_rtx(engine_models, counts, args.iterations, work, no_cuda)))
    runs = (parts[-1].results or {}).get("runs", [])
    engine = next((row["engine"] for row in runs if "committed" in row["model"] and "ms_p50_p95_by_boxes" in row), None)
    parts.append(run_part("fps", None, lambda: fps(args, refiner, engine, work, no_cuda)))
    return parts


def run_part(name: str, skip_reason: str | None, work: Callable[[], Any]) -> Part:
    """Run one part; a failure is recorded in one line and the suite goes on (a lent GPU's minutes are few)."""
    if skip_reason is not None:
        print(f"{name}: skipped ({skip_reason})", flush=True)
        return Part(name, "skipped", f"needs CUDA: {skip_reason}")
    print(f"{name} ...", flush=True)
    started = time.perf_counter()
    try:
        results = work()
    except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the other parts
        message = " ".join(f"{type(error).__name__}: {error}".split())
        print(f"{name}: failed: {message}", flush=True)
        return Part(name, "failed", message, round(time.perf_counter() - started, 1))
    return Part(name, "ran", None, round(time.perf_counter() - started, 1), results)


def random_model(short: str) -> RefinerNet:
    from pipeline.model.random_init import random_refiner

    return random_refiner(paper_spec(short, ("person",)))


def cuda_tests(timeout: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *CUDA_TESTS]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    lines = result.stdout.strip().splitlines()
    outcome = {
        "command": " ".join(command[1:]),
        "returncode": result.returncode,
        "summary": lines[-1] if lines else result.stderr.strip()[-500:],
        "skipped": [line for line in lines if line.startswith("SKIPPED")],
        "failures": [line for line in lines if line.startswith(("FAILED", "ERROR"))],
    }
    if result.returncode != 0:
        raise RuntimeError(f"CUDA tests failed: {outcome['summary']}; {' | '.join(outcome['failures'][:5])}")
    return outcome


def timed_ms(call: Callable[[], Any], iterations: int, synchronise: bool = True) -> tuple[float | None, float | None]:
    """p50/p95 of `call` in ms, CUDA-synchronised, after 10 unrecorded calls."""
    samples = []
    for index in range(10 + iterations):
        started = time.perf_counter()
        call()
        if synchronise:
            torch.cuda.synchronize()
        if index >= 10:
            samples.append((time.perf_counter() - started) * 1000.0)
    return percentiles(samples)


def device_inputs(model_spec, count: int) -> tuple[torch.Tensor, np.ndarray]:
    """Crops already on the GPU (what the GPU cropper hands over) and host mixture vectors."""
    size = model_spec.input_size
    crops = torch.randint(0, 256, (count, size, size, 3), dtype=torch.uint8, device="cuda")
    vectors = np.full((count, model_spec.vector_size), 0.5, dtype=np.float32)
    return crops, vectors


def torch_fp16(models: dict[str, Callable[[], RefinerNet]], counts: list[int], iterations: int) -> list[dict[str, Any]]:
    from pipeline.backends.torch import TorchBackend

    rows = []
    for label, make in models.items():
        model = make()
        for graphs in (False, True):
            backend = TorchBackend(copy.deepcopy(model), "cuda", max(counts), cuda_graphs=graphs)
            for count in counts:
                crops, vectors = device_inputs(backend.spec, count)
                p50, p95 = timed_ms(lambda: backend.refine(crops, vectors), iterations)
                rows.append({"model": label, "input_size": backend.spec.input_size, "cuda_graphs": graphs,
                             "boxes": count, "ms_p50": p50, "ms_p95": p95})
            backend.close()
        del model
        torch.cuda.empty_cache()
    return rows


def gpu_crops(counts: list[int], iterations: int) -> list[dict[str, Any]]:
    from pipeline.refine.crops import CpuCropper
    from pipeline.refine.gpu_crops import GpuCropper

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(FRAME[1], FRAME[0], 3), dtype=np.uint8)
    gpu, pool = GpuCropper(CROP_SIZE, "cuda"), CpuCropper(CROP_SIZE, workers=2)
    rows = []
    try:
        for count in counts:
            windows = crop_windows(random_boxes(rng, count, *FRAME), 0.15)
            gpu_p50, gpu_p95 = timed_ms(lambda: gpu.crop(image, windows), iterations)  # includes the frame upload
            cpu_p50, cpu_p95 = timed_ms(lambda: pool.crop(image, windows), iterations, synchronise=False)
            rows.append({"boxes": count, "crop_size": CROP_SIZE, "gpu_ms_p50": gpu_p50, "gpu_ms_p95": gpu_p95,
                         "cpu_pool_ms_p50": cpu_p50, "cpu_pool_ms_p95": cpu_p95})
    finally:
        gpu.close(), pool.close()
    return rows


def tensorrt_rtx(
    models: dict[str, Callable[[], RefinerNet]], counts: list[int], iterations: int, work: Path, no_cuda: str | None
) -> dict[str, Any]:
    """Build each model's FP16 engine (for this GPU, or the portable targets when dry) and run it where a GPU is."""
    from pipeline.core.errors import BackendError
    from pipeline.backends.tensorrt import CURRENT_TARGET, PORTABLE_TARGETS, TensorRTBackend, flavour_named
    from pipeline.model.artifacts import ModelFile

    flavour = flavour_named("rtx")
    targets = PORTABLE_TARGETS if no_cuda else (CURRENT_TARGET,)
    builds, runs = [], []
    for label, make in models.items():
        try:
            row = build_and_measure(label, make(), "fp16", flavour, work / "engines", targets=targets, max_batch=max(counts))
        except BackendError as error:
            builds.append({"model": label, "refused": str(error)})
            continue
        engine = row.pop("engine")
        builds.append(row)
        if no_cuda:
            runs.append({"model": label, "engine": engine, "skipped": f"running needs CUDA: {no_cuda}"})
            continue
        try:
            backend = TensorRTBackend(ModelFile.read(engine), "cuda", max(counts))
        except BackendError as error:
            runs.append({"model": label, "engine": None, "refused": str(error)})
            continue
        latencies = {}
        for count in counts:
            crops, vectors = device_inputs(backend.spec, count)
            latencies[str(count)] = timed_ms(lambda: backend.refine(crops, vectors), iterations)
        runs.append({"model": label, "engine": engine, "ms_p50_p95_by_boxes": latencies})
        backend.close()
    return {"flavour": flavour.label, "targets": list(targets), "builds": builds, "runs": runs}


def fps(args: argparse.Namespace, refiner: Path, engine: str | None, work: Path, no_cuda: str | None) -> dict[str, Any]:
    """Pipeline FPS on the clip: detect only, refined with torch (CUDA) or ONNX Runtime (CPU), refined with the engine."""
    from pipeline.io.detectors import open_detector
    from pipeline.app.run import RunConfig, run

    clip, note = args.clip, None
    detector_path = args.detector or DEFAULT_DETECTOR
    if not clip.is_file() or not detector_path.is_file():
        # The demo detector finds the generated scenes' classes, which only the synthetic refiner knows.
        from pipeline.data.synthetic import write_clip

        note = f"{clip} or {detector_path} is absent: a generated 1280x720 clip, the demo detector and refiner instead"
        clip, detector_path, engine = work / "synthetic.mp4", FALLBACK_DETECTOR, None
        refiner = next(ENGINES_DIR.glob("refiner-synthetic-*.safetensors"))
        write_clip(clip, args.fps_frames, *FRAME, seed=3)
    device = "cpu" if no_cuda else "cuda"
    detector = open_detector(detector_path, device=device)
    configurations = {"detect_only": (None, "auto"), "refined": (refiner, "onnxruntime" if no_cuda else "torch")}
    if engine is not None and not no_cuda:
        configurations["refined_tensorrt_rtx"] = (Path(engine), "tensorrt")
    figures = {}
    for label, (model, backend) in configurations.items():
        config = RunConfig(source=str(clip), detector=detector_path, refiner=model, refine=model is not None,
                           backend=backend, device=device, output=work / f"fps-{label}", max_frames=args.fps_frames,
                           progress=False)
        summary = run(config, detector=detector).summary
        if summary["status"] != "completed":
            raise RuntimeError(f"the {label} run did not complete: {summary['error']}")
        backend_name = (summary.get("refiner") or {}).get("backend")
        figures[label] = {"fps": summary["fps"], "frames": summary["frames"]["processed"], "backend": backend_name}
    return {"clip": str(clip), "note": note, "detector": str(detector_path), "device": device, "runs": figures}


def suite_markdown(parts: list[Part], no_cuda: str | None) -> str:
    by_name = {part.name: part for part in parts}
    lines = [f"**Dry run** ({no_cuda}): CUDA parts skipped, the rest ran.\n\n" if no_cuda else ""]
    lines.append(markdown_table(["part", "status", "seconds", "reason"], [[p.name, p.status, p.seconds, p.reason] for p in parts]))
    lines.append("\n\n## Beside the paper (RTX 2080 Ti; ours at 8 boxes, p50)\n\n" + markdown_table(
        ["figure", "paper", "ours", "how"], paper_rows(by_name)))
    torch_part, crops_part, trt_part, fps_part = (by_name[name] for name in ("torch_fp16", "gpu_crops", "tensorrt_rtx", "fps"))
    if torch_part.results:
        lines.append("\n\n## Torch FP16 on CUDA (ms per batched call, crops already on the GPU)\n\n" + markdown_table(
            ["model", "size", "CUDA graphs", "boxes", "p50", "p95"],
            [[r["model"], r["input_size"], r["cuda_graphs"], r["boxes"], r["ms_p50"], r["ms_p95"]] for r in torch_part.results]))
    if crops_part.results:
        lines.append("\n\n## Crop preparation per 1280x720 frame (ms)\n\n" + markdown_table(
            ["boxes", "size", "GPU p50", "GPU p95", "CPU pool p50", "CPU pool p95"],
            [[r["boxes"], r["crop_size"], r["gpu_ms_p50"], r["gpu_ms_p95"], r["cpu_pool_ms_p50"], r["cpu_pool_ms_p95"]]
             for r in crops_part.results]))
    if trt_part.results:
        built = [row for row in trt_part.results["builds"] if "refused" not in row]
        lines.append(f"\n\n## {trt_part.results['flavour']} engines ({', '.join(trt_part.results['targets'])})\n\n"
                     + builds_markdown(built) + "\n")
        for row in trt_part.results["builds"] + trt_part.results["runs"]:
            if "refused" in row or "skipped" in row:
                lines.append(f"\n- {row['model']}: {row.get('refused') or row.get('skipped')}")
            elif "ms_p50_p95_by_boxes" in row:
                timings = ", ".join(f"{boxes} boxes {p50} / {p95} ms" for boxes, (p50, p95) in row["ms_p50_p95_by_boxes"].items())
                lines.append(f"\n- {row['model']} engine, p50 / p95: {timings}")
    if fps_part.results:
        results = fps_part.results
        lines.append(f"\n\n## End-to-end FPS ({results['clip']}, {results['detector']}, {results['device']})\n\n"
                     + (f"{results['note']}\n\n" if results["note"] else "")
                     + markdown_table(["run", "FPS", "frames", "backend"],
                                      [[label, r["fps"], r["frames"], r["backend"]] for label, r in results["runs"].items()]))
    return "".join(lines) + "\n"


def paper_rows(parts: dict[str, Part]) -> list[list[Any]]:
    """The paper's GPU figures and ours at 8 boxes (or the nearest count measured); n/a where a part did not run."""
    def at_eight(rows: list[dict], key: str, **match: Any) -> Any:
        rows = [row for row in rows or [] if all(row.get(name) == value for name, value in match.items())]
        if not rows:
            return None
        return min(rows, key=lambda row: abs(row["boxes"] - 8))[key]

    torch_rows, crop_rows = parts["torch_fp16"].results or [], parts["gpu_crops"].results or []
    trt_runs = {row["model"]: row for row in (parts["tensorrt_rtx"].results or {}).get("runs", [])}
    rows = []
    for short in ("b1", "b3"):
        rows.append([f"{short.upper()} inference", f"{PAPER_INFER_MS[short]} ms", at_eight(torch_rows, "ms_p50", model=short, cuda_graphs=True), "torch FP16 + CUDA graphs"])
        timings = trt_runs.get(short, {}).get("ms_p50_p95_by_boxes", {})
        nearest = min(timings, key=lambda boxes: abs(int(boxes) - 8), default=None)
        rows.append([f"{short.upper()} inference", f"{PAPER_INFER_MS[short]} ms", timings[nearest][0] if nearest else None, "TensorRT-RTX FP16"])
    rows.append(["crop preparation", f"{PAPER_CROP_MS} ms", at_eight(crop_rows, "gpu_ms_p50"), f"GPU cropper, {CROP_SIZE} px"])
    fps_runs = (parts["fps"].results or {}).get("runs", {})
    for short in ("b1", "b3"):
        ours = (fps_runs.get("refined_tensorrt_rtx") or fps_runs.get("refined") or {}).get("fps")
        rows.append([f"FPS with refinement ({short.upper()})", PAPER_FPS[short], ours, "committed refiner, detector + refine pipeline"])
    return rows
