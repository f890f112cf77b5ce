"""`auto` on the CPU: time the CPU runtimes on this model and keep the fastest, remembered per model file and machine.

Why measure: which runtime wins depends on the CPU (BF16 or AMX units, cache sizes), the model and
the installed versions, so no fixed order is right everywhere. A probe is a few batches of random
crops (speed does not depend on the pixels); its result is kept in engines/cache/cpu-backends.json
under a key of the model's content, the machine, the thread count and the runtimes' versions, so
later runs open the winner directly. A runtime that fails to open or to run is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from pipeline.backends.base import BackendOptions, BackendUnavailable, RefinerBackend, default_cpu_threads
from pipeline.core.errors import BackendError, ModelFileError
from pipeline.model import defaults
from pipeline.model.artifacts import ModelFile

log = logging.getLogger(__name__)

PROBE_CROPS = 8  # a typical frame's detections
PROBE_RUNS = 3  # timed calls after one warm-up call; the median counts


def choices_file() -> Path:
    return defaults.writable_root() / "engines" / "cache" / "cpu-backends.json"  # installed: under the user's cache


def probe_ms(backend: RefinerBackend, crops: int = PROBE_CROPS, runs: int = PROBE_RUNS) -> float:
    """Median wall time in ms of one `refine` of `crops` random crops, after a warm-up call."""
    spec = backend.spec
    rng = np.random.default_rng(0)
    count = min(crops, backend.max_batch)
    images = rng.integers(0, 256, (count, spec.input_size, spec.input_size, 3), dtype=np.uint8)
    vectors = np.full((count, spec.vector_size), 0.5, dtype=np.float32)
    backend.refine(images, vectors)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        backend.refine(images, vectors)
        times.append((time.perf_counter() - started) * 1000.0)
    return round(statistics.median(times), 2)


def choice_key(model: ModelFile, names: Sequence[str], options: BackendOptions) -> str:
    """What a measured choice holds for: this model's content on this machine with these runtimes and settings."""
    installed = []
    for name in names:
        try:
            installed.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            installed.append(f"{name} -")
    threads = options.threads or default_cpu_threads()
    machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus"
    return f"{model.sha256[:16]} | {machine} | {threads} threads | precision {options.precision or 'auto'} | {', '.join(installed)}"


def remembered(key: str) -> dict | None:
    try:
        return json.loads(choices_file().read_text()).get(key)
    except (OSError, json.JSONDecodeError):
        return None


def remember(key: str, record: dict) -> None:
    path = choices_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        known = {}
    known[key] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)  # atomic: runs starting together never read half a file


def open_fastest(
    openers: dict[str, Callable[[], RefinerBackend]], model: ModelFile, options: BackendOptions, reasons: list[str]
) -> tuple[RefinerBackend, str] | None:
    """The fastest of the CPU runtimes that open, and why it was picked; None when none opens.

    `openers` maps runtime names to functions opening them on this model; failures are appended to
    `reasons` (the caller's error lists them when nothing at all can run the model).
    """
    key = choice_key(model, list(openers), options)
    record = remembered(key)
    if record and record.get("choice") in openers:
        name = record["choice"]
        backend = try_open(name, openers[name], reasons)
        if backend is not None:
            return backend, f"fastest here when measured on {record['measured']} ({_timings(record['ms'])}; {choices_file()})"
        openers = {other: opener for other, opener in openers.items() if other != name}
    opened = {name: backend for name, opener in openers.items() if (backend := try_open(name, opener, reasons)) is not None}
    if len(opened) == 1:
        (name, backend), = opened.items()
        return backend, "the only CPU runtime that opened"
    timings: dict[str, float] = {}
    for name, backend in list(opened.items()):
        try:
            timings[name] = probe_ms(backend)
        except (RuntimeError, BackendError) as error:  # a runtime that opens but fails to run falls back to the others
            log.warning("backend %s failed its timed probe: %s", name, error)
            reasons.append(f"{name}: {error}")
            opened.pop(name).close()
    if not timings:
        return None
    name = min(timings, key=timings.__getitem__)
    for other in set(opened) - {name}:
        opened[other].close()
    measured = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    remember(key, {"choice": name, "ms": timings, "measured": measured, "crops": PROBE_CROPS})
    return opened[name], f"fastest in a timed probe ({_timings(timings)}); remembered in {choices_file()}"


def try_open(name: str, opener: Callable[[], RefinerBackend], reasons: list[str]) -> RefinerBackend | None:
    """Open a runtime for `auto`: one that is simply not here is noted quietly, other failures are warned about."""
    try:
        return opener()
    except (BackendError, ModelFileError) as error:
        (log.info if isinstance(error, BackendUnavailable) else log.warning)("backend %s skipped: %s", name, error)
        reasons.append(f"{name}: {error}")
        return None


def _timings(ms: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:g} ms" for name, value in sorted(ms.items(), key=lambda item: item[1])) + f" per {PROBE_CROPS} crops"
