"""Every command README.md (and docs/*.md) shows runs as written: the app's in a quick mode, the others through their parsers.

`python -m pipeline` commands run for real with --max-frames added and placeholder files
(camera.mp4) made; train/build_engine/benchmarks commands name placeholder datasets, so their
arguments are parsed by the scripts' own parsers (a renamed or dropped flag fails here); `make`
targets must exist; the Python API example runs as written.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
DOCS = "\n".join(path.read_text() for path in sorted((REPO / "docs").glob("*.md")))
PYTHON_PREFIXES = (".venv/bin/python", "python")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def code_blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def shell_commands() -> list[list[str]]:
    """Commands of every bash block of README.md and docs/, continuation lines joined, comments dropped."""
    commands = []
    for block in code_blocks("bash", README + DOCS):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and not re.fullmatch(r"[A-Z_]+=.*", words[0]):
                commands.append(words)
    return commands


COMMANDS = shell_commands()
PIPELINE = [c for c in COMMANDS if c[0] in PYTHON_PREFIXES and c[1:3] == ["-m", "pipeline"]]


def test_readme_shows_the_users_command_and_every_command_is_covered():
    assert [".venv/bin/python", "-m", "pipeline", "--source", "camera.mp4"] in COMMANDS
    covered = {"make", *PYTHON_PREFIXES}
    assert all(command[0] in covered for command in COMMANDS), [c for c in COMMANDS if c[0] not in covered]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c[0] == "make"], ids=" ".join)
def test_make_targets_exist(command):
    makefile = (REPO / "Makefile").read_text()
    for target in command[1:]:
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target


@pytest.mark.slow
@pytest.mark.parametrize("command", PIPELINE, ids=" ".join)
def test_pipeline_commands_run(command, tmp_path, demo_clip):
    clip = demo_clip(tmp_path / "camera.mp4", 0, 2)
    arguments = [str(clip) if word == "camera.mp4" else word for word in command[3:]]
    if "--output" in arguments:
        arguments[arguments.index("--output") + 1] = str(tmp_path / "run")
    else:
        arguments += ["--output", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pipeline", *arguments, "--max-frames", "2"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "summary.json").is_file()


@pytest.mark.parametrize("command", [c for c in COMMANDS if c[0] in PYTHON_PREFIXES and c not in PIPELINE], ids=" ".join)
def test_other_commands_parse(command):
    if command[1:3] == ["-m", "train"]:
        importlib.import_module("train.__main__").parse_args(command[3:])
    elif command[1:3] == ["-m", "train.detector_boxes"]:
        importlib.import_module("train.detector_boxes").parse_args(command[3:])
    elif command[1] == "build_engine.py":
        sys.path.insert(0, str(REPO))
        importlib.import_module("build_engine").parse_arguments(command[2:])  # the script is what README shows
    elif command[1:3] == ["-m", "benchmarks"]:
        importlib.import_module("benchmarks.__main__").build_parser().parse_args(command[3:])
    elif command[1:3] == ["-m", "train.export_fp16"]:
        importlib.import_module("train.export_fp16").parse_args(command[3:])
    elif command[1:4] == ["-m", "pip", "install"]:  # this package, with extras pyproject.toml declares
        targets = [word for word in command[4:] if not word.startswith("-")]
        assert targets and all(re.fullmatch(r"\.(\[[\w,]+\])?", word) for word in targets), targets
        extras = {extra for word in targets for extra in re.findall(r"\w+", word)}
        assert extras <= set(PYPROJECT["project"]["optional-dependencies"]), extras
    elif command[1:3] == ["-m", "pytest"]:  # markers it selects on are registered
        registered = {marker.split(":")[0] for marker in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}
        expression = command[command.index("-m", 3) + 1] if "-m" in command[3:] else ""
        assert set(re.findall(r"\w+", expression)) - {"not", "and", "or"} <= registered
    elif command[1:4] == ["-m", "pip", "download"]:  # the GPU machine's wheels: the versions this checkout pins
        pinned = set((REPO / "requirements.txt").read_text().split())
        assert [word for word in command if "==" in word and word not in pinned] == []
    else:
        pytest.fail(f"README command {' '.join(command)} is not covered by this test")


@pytest.mark.slow
def test_python_api_example_runs_as_written(tmp_path):
    (example,) = re.findall(r"## Python API\n\n```python\n(.*?)```", README, flags=re.S)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1",
           "YOLO_CONFIG_DIR": str(REPO / ".yolo")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", example], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refined" in done.stdout and "unmapped" in done.stdout


def test_engines_readme_names_every_committed_model():
    """engines/README.md matches what is committed: every model in engines/ is described, every training log has its model."""
    engines = REPO / "engines"
    text = (engines / "README.md").read_text()
    models = [path.name for pattern in ("*.safetensors", "*.pt") for path in engines.glob(pattern)]
    assert models and [name for name in models if name not in text] == []
    logs = [path.name.removesuffix(".log.jsonl") for path in engines.glob("*.log.jsonl")]
    assert [stem for stem in logs if f"{stem}.safetensors" not in models] == []
