"""The models a run uses when the user names none, and where they are looked for; never downloaded.

Where, in order (README "Install as a package"): the folder named by $BBREFINE_MODELS (the user's
own defaults), the copies an installed package carries (`pipeline/_bundled/`, put there by
setup.py), the checkout's engines/ and models/. The person refiner is found by pattern, never by
full name: it is retrained and renamed (`refiner-person-<backbone>-<size>-<head>`), so code and
README must not pin one file name; exactly one such file is committed at a time. The detector is
the first of a list of candidate names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.errors import DefaultModelError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parent
ENGINES_DIR = REPO_ROOT / "engines"
MODELS_DIR = REPO_ROOT / "models"
ASSETS_DIR = REPO_ROOT / "assets"
BUNDLED_DIR = PACKAGE_DIR / "_bundled"  # engines/ and models/ copies inside an installed package (setup.py)
MODELS_ENV = "BBREFINE_MODELS"  # a folder holding the user's default refiner and/or detector
CACHE_ENV = "BBREFINE_CACHE"  # where an installed package writes exports and settings (default ~/.cache/bbrefinement)
REFINER_PATTERN = "refiner-person-*.safetensors"
DETECTOR_PT = "yolov8n-coco.pt"  # torch: on the GPU with CUDA, and also the faster one on our 2-core CPU
DETECTOR_OPENVINO = "yolov8n-coco_openvino_model"  # opt-in OpenVINO IR of the .pt: tools/export_detector_openvino.py writes it
DETECTOR_ONNX = "yolov8n-coco-int8.onnx"  # the same network, int8 ONNX: the fallback (CPU only)
# First found wins. On CPU the .pt is preferred too: on the 2-core test machine it detected in 171 ms
# p50 per 768x432 frame vs 371 ms for the int8 ONNX (dynamic quantization, fixed 640x640 input). The
# OpenVINO export detects faster alone but slowed the refiner sharing the cores: refined crowd FPS
# 2.1 vs 3.2 with the .pt (benchmarks/results/cpu-2core/crowd-detector-pt-vs-openvino.md).
DETECTOR_NAMES = (DETECTOR_PT, DETECTOR_ONNX)
DEMO_VIDEO = ASSETS_DIR / "one-by-one-person-detection.mp4"


def in_checkout() -> bool:
    """True when this package runs from the repository (not from an installed copy)."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "engines").is_dir()


def search_dirs(kind: str) -> list[Path]:
    """Folders searched for a default model of `kind` ("engines": refiners, "models": detectors), in order."""
    user = [Path(os.environ[MODELS_ENV]).expanduser()] if os.environ.get(MODELS_ENV) else []
    return [*user, BUNDLED_DIR / kind, REPO_ROOT / kind]


def writable_root() -> Path:
    """A writable folder for derived files (ONNX exports, Ultralytics settings).

    In a checkout: the checkout itself (git-ignored paths, as before). Installed: $BBREFINE_CACHE,
    else ~/.cache/bbrefinement (XDG_CACHE_HOME respected), never site-packages.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if in_checkout():
        return REPO_ROOT
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bbrefinement"


def default_refiner(folders: Path | Sequence[Path] | None = None) -> Path:
    """The one person refiner (refiner-person-*.safetensors) of the first folder that has any."""
    folders = _folders(folders, "engines")
    for folder in folders:
        found = sorted(folder.glob(REFINER_PATTERN))
        if len(found) == 1:
            return found[0]
        if found:
            raise DefaultModelError(f"expected exactly one {folder}/{REFINER_PATTERN}, found {len(found)} "
                                    f"({', '.join(path.name for path in found)}); keep one, or name a refiner model file")
    raise DefaultModelError(f"no default refiner ({REFINER_PATTERN}) in {_listed(folders)}; "
                            f"name a refiner model file, or set {MODELS_ENV} to a folder holding one")


def default_detector(folders: Path | Sequence[Path] | None = None) -> Path:
    """The first of DETECTOR_NAMES in the first folder that has one."""
    folders = _folders(folders, "models")
    for folder in folders:
        for name in DETECTOR_NAMES:
            if (folder / name).is_file():
                return folder / name
    raise DefaultModelError(f"no default detector ({' or '.join(DETECTOR_NAMES)}) in {_listed(folders)}; "
                            f"name a detector model file, or set {MODELS_ENV} to a folder holding one")


def resolve_device(device: str | None) -> str:
    """The device asked for, else "cuda" when torch sees a GPU, else "cpu"."""
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _folders(folders: Path | Sequence[Path] | None, kind: str) -> list[Path]:
    if folders is None:
        return search_dirs(kind)
    return [Path(folders)] if isinstance(folders, str | Path) else [Path(folder) for folder in folders]


def _listed(folders: Sequence[Path]) -> str:
    return ", ".join(str(folder) for folder in folders)
