"""`pip install .` works where it is installed: the wheel holds the library, the app and the default models,
and the installed copy refines and runs `bbrefine` from another folder, with no checkout and no model paths."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from pipeline.model.defaults import DETECTOR_NAMES, default_detector, default_refiner

REPO = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built offline from a copy of what the build reads, so the build leaves nothing in the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    skip = shutil.ignore_patterns("__pycache__", "cache", "*.state.pt", "*.engine", "*.json", "*.tmp")
    for folder in ("pipeline", "engines", "models"):
        shutil.copytree(REPO / folder, source / folder, ignore=skip)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(work), str(source)], check=True)
    (built,) = work.glob("bbrefinement_rt-*.whl")
    return built


def test_the_wheel_holds_the_library_and_the_default_models(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "pipeline/refine/api.py" in names and "pipeline/backends/onnxruntime.py" in names
    assert not any(name.startswith(("tests/", "train/", "benchmarks/")) for name in names)
    assert f"pipeline/_bundled/engines/{default_refiner().name}" in names
    committed = [name for name in DETECTOR_NAMES if (REPO / "models" / name).is_file()]
    assert default_detector().name in committed
    assert [name for name in committed if f"pipeline/_bundled/models/{name}" not in names] == []
    bundled = [name for name in names if name.startswith("pipeline/_bundled/")]
    assert len([name for name in bundled if name.endswith(".safetensors")]) == 1  # the default only, not every refiner


@pytest.mark.slow
def test_the_installed_package_refines_and_runs_from_another_folder(wheel, tmp_path, demo_clip):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    demo_clip(elsewhere / "clip.mp4", 250, 2)
    # Dependencies come from this environment (not reinstalled); the package itself only from the fresh venv.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("BBREFINE_", "YOLO_"))}
    env.update(PYTHONPATH=sysconfig.get_paths()["purelib"], HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    env.pop("XDG_CACHE_HOME", None)
    api = ("import cv2, pipeline; from pipeline import Refiner; refiner = Refiner(); print(pipeline.__file__); "
           "image = cv2.VideoCapture('clip.mp4').read()[1]; box = [300.0, 40.0, 440.0, 400.0]; "
           "print(abs(refiner.refine(image, [box], ['person']).boxes[0] - box).max())")
    done = subprocess.run([str(python), "-c", api], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    location, moved = done.stdout.split()
    assert location.startswith(str(venv)) and float(moved) > 0  # the person's box was refined
    run = subprocess.run([str(venv / "bin" / "bbrefine"), "--source", "clip.mp4", "--output", "out"], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert len((elsewhere / "out" / "detections.jsonl").read_text().splitlines()) == 2
    assert list(venv.rglob("cache")) == [] and list(venv.rglob(".yolo")) == []  # nothing written into site-packages
    assert (tmp_path / "home" / ".cache" / "bbrefinement" / "engines" / "cache").is_dir()  # the ONNX export went there
