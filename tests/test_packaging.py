"""`pip install .` works: the wheel holds the library and app, and installs and imports in a fresh venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_wheel_builds_installs_into_a_fresh_venv_and_imports(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(REPO / "pipeline", source / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path), str(source)], check=True)
    (wheel,) = tmp_path.glob("bbrefinement_rt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pipeline/refine/api.py" in names and "pipeline/backends/onnxruntime.py" in names
    assert not any(name.startswith(("tests/", "train/", "benchmarks/")) for name in names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    assert (venv / "bin" / "bbrefine").is_file()
    # Dependencies come from this environment (not reinstalled); the package itself from the fresh venv.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    check = "import pipeline; from pipeline import Refiner, RefinedDetections; print(pipeline.__file__)"
    done = subprocess.run([str(python), "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip().startswith(str(venv))
