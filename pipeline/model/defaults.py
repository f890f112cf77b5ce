"""The committed models a run uses when the user names none, found by pattern, never by full name.

Why patterns: the person refiner is retrained and renamed (`refiner-person-<backbone>-<size>-<head>`),
so code and README must not pin one file name; exactly one such file is committed at a time.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import DefaultModelError

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINES_DIR = REPO_ROOT / "engines"
MODELS_DIR = REPO_ROOT / "models"
ASSETS_DIR = REPO_ROOT / "assets"
REFINER_PATTERN = "refiner-person-*.safetensors"
DETECTOR_PT = "yolov8n-coco.pt"  # torch: on the GPU with CUDA, and also the faster one on our 2-core CPU
DETECTOR_OPENVINO = "yolov8n-coco_openvino_model"  # opt-in OpenVINO IR of the .pt: tools/export_detector_openvino.py writes it
DETECTOR_ONNX = "yolov8n-coco-int8.onnx"  # the same network, int8 ONNX: the fallback (CPU only)
DEMO_VIDEO = ASSETS_DIR / "one-by-one-person-detection.mp4"


def default_refiner(engines_dir: Path = ENGINES_DIR) -> Path:
    """The one committed person refiner, engines/refiner-person-*.safetensors."""
    found = sorted(Path(engines_dir).glob(REFINER_PATTERN))
    if len(found) != 1:
        what = "none" if not found else f"{len(found)} ({', '.join(path.name for path in found)})"
        raise DefaultModelError(
            f"expected exactly one {engines_dir}/{REFINER_PATTERN}, found {what}; pass --refiner MODEL"
        )
    return found[0]


def default_detector(models_dir: Path = MODELS_DIR) -> Path:
    """The committed COCO YOLOv8n: the .pt, which torch runs on the GPU under CUDA; the int8 ONNX if it is missing.

    On CPU the .pt is preferred too: on the 2-core test machine it detected in 171 ms p50 per
    768x432 frame vs 371 ms for the int8 ONNX (dynamic quantization, fixed 640x640 input). The
    OpenVINO export detects faster alone but slowed the refiner sharing the cores: refined crowd
    FPS 2.1 vs 3.2 with the .pt (benchmarks/results/cpu-2core/crowd-detector-pt-vs-openvino.md).
    """
    names = (DETECTOR_PT, DETECTOR_ONNX)
    for name in names:
        if (Path(models_dir) / name).is_file():
            return Path(models_dir) / name
    raise DefaultModelError(f"no default detector in {models_dir} ({' or '.join(names)}); pass --detector MODEL")


def resolve_device(device: str | None) -> str:
    """The device asked for, else "cuda" when torch sees a GPU, else "cpu"."""
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
