"""Report writing shared by every benchmark: who measured what, where, with which command.

A benchmark figure means nothing without its machine, library versions and load (these CPUs are
often shared with training jobs), so every report carries them in the same header.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """`lscpu`'s model name, or the platform's processor string where lscpu is missing."""
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            return value.strip()
    return "unknown"


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for module in ("torch", "onnxruntime", "openvino", "cv2", "numpy", "tensorrt", "tensorrt_rtx"):
        try:
            versions["opencv" if module == "cv2" else module] = __import__(module).__version__
        except (ImportError, OSError):  # OSError: a TensorRT package without its shared library
            versions["opencv" if module == "cv2" else module] = None
    return versions


def environment(argv: list[str]) -> dict[str, Any]:
    """Machine, versions, the command (`argv`: the arguments after `python -m benchmarks`) and load: every report's header."""
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu, "platform": platform.platform()},
        "versions": library_versions(),
        "command": "python -m benchmarks " + " ".join(shlex.quote(arg) for arg in argv),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "n/a"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def header_markdown(env: dict[str, Any]) -> str:
    machine, versions = env["machine"], env["versions"]
    shared = " (shared: other jobs were running)" if env["load_average_1m_at_start"] > 0.5 * (machine["cores"] or 1) else ""
    return "\n".join(
        [
            f"- machine: {machine['cpu']}, {machine['cores']} cores, GPU: {machine['gpu'] or 'none'}",
            f"- load average at start: {env['load_average_1m_at_start']}{shared}",
            "- versions: " + ", ".join(f"{name} {version}" for name, version in versions.items() if version),
            f"- date: {env['date']}",
            f"- command: `{env['command']}`",
        ]
    )


def write_report(out: Path | None, title: str, env: dict[str, Any], results: dict[str, Any], body_markdown: str) -> None:
    """Print the markdown; with `out`, write out (JSON: env + results) and the same stem .md beside it."""
    markdown = f"# {title}\n\n{header_markdown(env)}\n\n{body_markdown}\n"
    print(markdown)
    if out is None:
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**env, **results}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)
