"""Fault injection through the real CLI (`python -m pipeline` in a child process): each fault ends in the
promised exit code and one error line, a valid summary.json, and a detections.jsonl of whole lines with
consecutive frames per stream, in which every frame read is accounted for.

Faults: unreadable images in a folder (one and two streams), a file size limit that stops the JSONL or
the video (ulimit -f, set in the child), damaged, truncated or NaN weights, a foreign engine, SIGINT and
SIGTERM while models load and while frames flow, SIGKILL, and a stream cut short among two. The hung
and the killed Triton server: tests/pipeline/backends/test_triton_server.py (they need the server).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import read_spec, sidecar_path
from pipeline.model.checkpoint import save_refiner
from pipeline.model.net import RefinerNet
from tests.pipeline.app.test_cli import crowded_detections, write_clip, write_mot_detections
from tests.pipeline.app.test_run import corrupt_clip
from tests.pipeline.model.test_checkpoint import damage_weights

REPO = Path(__file__).resolve().parents[3]
CHILD_TIMEOUT_S = 300  # a bound for a hung child on a loaded machine, not a speed requirement


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def cli(*arguments: str | Path, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGUMENTS` in a child; `file_size_limit` bytes: ulimit -f in the child only."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, arguments)], cwd=REPO, env=child_env(), capture_output=True,
        text=True, timeout=CHILD_TIMEOUT_S, preexec_fn=limit if file_size_limit else None, check=False,
    )  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def one_error(result: subprocess.CompletedProcess, code: int, *phrases: str) -> str:
    """The child exited with `code` and printed exactly one error line (no traceback) holding every phrase."""
    assert result.returncode == code, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(phrase in errors[0] for phrase in phrases), errors[0]
    return errors[0]


def run_outputs(run_dir: Path) -> tuple[dict, dict[int, list[int]]]:
    """summary.json, and detections.jsonl's frames per stream, checked: every line whole, frames consecutive,
    every frame read processed (one line each), dropped or unfinished, and the frames each file holds as
    `files` says. A frame is processed once every file has it: after a write failure one file may hold one more."""
    summary = json.loads((run_dir / "summary.json").read_text())
    data = (run_dir / "detections.jsonl").read_bytes()
    assert data == b"" or data.endswith(b"\n"), "detections.jsonl ends in a torn line"
    frames: dict[int, list[int]] = {}
    for line in data.splitlines():
        record = json.loads(line)
        frames.setdefault(record.get("stream", 0), []).append(record["frame"])
    assert all(found == list(range(len(found))) for found in frames.values()), frames
    files = summary["files"]
    assert files["detections.jsonl"]["frames"] == sum(map(len, frames.values()))
    failed = any(file["error"] for file in files.values())
    streams = summary.get("streams") or [{"stream": 0, "frames": summary["frames"]}]
    for stream in streams:
        counts = stream["frames"]
        assert counts["read"] == counts["processed"] + counts["dropped"] + counts["unfinished"], counts
        assert min(counts.values()) >= 0
        lines = len(frames.get(stream["stream"], []))
        if failed:  # the frame a later file failed on is in detections.jsonl, but not processed
            assert lines - 1 <= counts["processed"] <= lines
        else:
            assert counts["processed"] == lines
    return summary, frames


def video_frames(path: Path) -> int:
    """Frames a player decodes from the video (0 for a file without its index: unplayable)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def baseline(source: Path, detections: Path, output: Path, *extra: str | Path) -> list[str | Path]:
    return ["--source", source, "--detector", detections, "--no-refine", "--output", output, *extra]


def refined(inputs: dict[str, Path], refiner: Path, output: Path, *extra: str | Path) -> list[str | Path]:
    return ["--source", inputs["clip"], "--detector", inputs["detections"], "--refiner", refiner, "--backend", "torch",
            "--device", "cpu", "--output", output, *extra]  # fmt: skip


# --- sources -------------------------------------------------------------------------------------------------


def image_folder(folder: Path) -> Path:
    """8 JPEGs, the 3rd empty and the 7th 5,000 random bytes, and a folder named like an image."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(1, 9):
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    (folder / "000003.jpg").write_bytes(b"")
    (folder / "000007.jpg").write_bytes(rng.bytes(5000))
    (folder / "sub.jpg").mkdir()
    return folder


@pytest.mark.parametrize("streams", [1, 2])
def test_unreadable_images_are_skipped_counted_and_named_in_one_and_many_streams(inputs, tmp_path, streams):
    folder = image_folder(tmp_path / "images")
    extra = ["--source", inputs["clip"]] if streams == 2 else []
    result = cli(*baseline(folder, inputs["detections"], tmp_path / "run"), *extra)
    assert result.returncode == 0 and not error_lines(result.stderr), result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:") and "did not decode" in line]
    assert len(warnings) == 1 and "skipped 2 image(s)" in warnings[0], result.stderr
    assert "000003.jpg" in warnings[0] and "000007.jpg" in warnings[0] and "sub.jpg" not in warnings[0]
    summary, frames = run_outputs(tmp_path / "run")
    folder_frames = summary["streams"][0]["frames"] if streams == 2 else summary["frames"]
    assert folder_frames["processed"] == 6 and folder_frames["unreadable"] == 2 and frames[0] == list(range(6))
    if streams == 2:
        assert summary["streams"][1]["frames"]["processed"] == 12 and summary["frames"]["unreadable"] == 2
    assert video_frames(tmp_path / "run" / ("annotated-0.mp4" if streams == 2 else "annotated.mp4")) == 6


def test_a_stream_cut_short_ends_early_with_a_warning_while_the_other_finishes(inputs, tmp_path):
    broken = corrupt_clip(tmp_path / "broken.mp4")
    result = cli(*baseline(broken, inputs["detections"], tmp_path / "run"), "--source", inputs["clip"])
    assert result.returncode == 0 and not error_lines(result.stderr), result.stderr
    assert any(line.startswith("warning: stream 0") and "stopped decoding" in line for line in result.stderr.splitlines())
    summary, frames = run_outputs(tmp_path / "run")
    assert summary["status"] == "completed" and summary["streams"][0]["ended_early"]
    assert len(frames[0]) < 30 and frames[1] == list(range(12))


# --- outputs -------------------------------------------------------------------------------------------------


def test_a_size_limit_on_detections_jsonl_stops_the_run_on_a_whole_line(inputs, tmp_path):
    # ~110 KiB per line (600 boxes), flat grey frames (a tiny video): detections.jsonl reaches 1 MiB first.
    clip = tmp_path / "flat.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (96, 64))
    for _ in range(40):
        writer.write(np.full((64, 96, 3), 90, np.uint8))
    writer.release()
    detections = crowded_detections(tmp_path / "crowded.txt", 40, 600)
    run_dir = tmp_path / "run"
    result = cli(*baseline(clip, detections, run_dir), file_size_limit=2**20)
    one_error(result, 1, f"cannot write {run_dir / 'detections.jsonl'}", "file size limit (ulimit -f) is reached")
    summary, frames = run_outputs(run_dir)
    files = summary["files"]
    assert summary["status"] == "failed" and 0 < files["detections.jsonl"]["frames"] == len(frames[0]) < 40
    assert files["detections.jsonl"]["error"] and files["annotated.mp4"] == {"frames": len(frames[0]), "error": None}
    assert video_frames(run_dir / "annotated.mp4") == len(frames[0])  # closed: playable, every frame written


def test_a_size_limit_on_the_video_stops_it_playable(inputs, tmp_path):
    clip = write_clip(tmp_path / "noisy.mp4", 200, size=(320, 240))  # random noise: ~50 KiB per mp4v frame
    run_dir = tmp_path / "run"
    result = cli(*baseline(clip, write_mot_detections(tmp_path / "det.txt", 200), run_dir), file_size_limit=1536 * 1024)
    one_error(result, 1, f"cannot write {run_dir / 'annotated.mp4'}", "file size limit")
    summary, frames = run_outputs(run_dir)
    video = summary["files"]["annotated.mp4"]
    assert summary["status"] == "failed" and 0 < video["frames"] < 200 and video["error"]
    assert video_frames(run_dir / "annotated.mp4") == video["frames"]  # stopped in time: its index fits, it plays
    # detections.jsonl is written first: it holds the frame the video failed on too, which is not processed
    assert len(frames[0]) == video["frames"] + 1 == summary["frames"]["processed"] + 1


# --- model files ---------------------------------------------------------------------------------------------


def copied(path: Path, to: Path) -> Path:
    shutil.copyfile(path, to)
    return to


def test_damaged_weights_are_refused_before_any_output(inputs, tmp_path):
    damaged = copied(inputs["refiner"], tmp_path / "damaged.safetensors")
    damage_weights(damaged)
    one_error(cli(*refined(inputs, damaged, tmp_path / "run")), 2, "do not match the digest", str(damaged))
    assert not (tmp_path / "run").exists()


def test_a_truncated_checkpoint_is_refused(inputs, tmp_path):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(inputs["refiner"].read_bytes()[:50_000])
    one_error(cli(*refined(inputs, truncated, tmp_path / "run")), 2, str(truncated))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("sidecar", ["missing", "another machine"])
def test_a_foreign_engine_is_refused(inputs, tmp_path, sidecar):
    engine = tmp_path / "foreign.engine"
    engine.write_bytes(np.random.default_rng(1).bytes(4096))
    if sidecar == "another machine":
        fields = {"spec": json.loads(read_spec(inputs["refiner"]).to_json()), "tensorrt": "9.0.0",
                  "tensorrt_flavour": "tensorrt", "gpu": {"name": "Other GPU", "compute_capability": "7.5"}}  # fmt: skip
        sidecar_path(engine).write_text(json.dumps(fields))
    result = cli(*refined(inputs, engine, tmp_path / "run", "--backend", "tensorrt"))
    # No sidecar: the file is named. Another machine's: refused as not runnable here (no GPU) or built elsewhere.
    one_error(result, 2, "foreign.engine" if sidecar == "missing" else "TensorRT")
    assert not (tmp_path / "run").exists()


def test_non_finite_refiner_outputs_are_counted_invalid_and_warned_never_gated(inputs, tmp_path):
    torch.manual_seed(0)
    model = RefinerNet(RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("person", "disc")))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))  # weights saved as NaN (so the digest matches): every output is NaN
    refiner = save_refiner(model, tmp_path / "nan.safetensors")
    result = cli(*refined(inputs, refiner, tmp_path / "run"))
    assert result.returncode == 0 and not error_lines(result.stderr), result.stderr
    assert any(line.startswith("warning:") and "NaN or infinity" in line for line in result.stderr.splitlines())
    summary, frames = run_outputs(tmp_path / "run")
    assert summary["objects"].get("invalid", 0) > 0 and "gated" not in summary["objects"] and "refined" not in summary["objects"]


# --- signals -------------------------------------------------------------------------------------------------


def catches_sigterm(pid: int) -> bool:
    """True once the process has a handler for SIGTERM (its SigCgt mask in /proc), i.e. the CLI's main() runs."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def until(condition: Callable[[], bool], process: subprocess.Popen) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not condition():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the child never reached the state to signal"
        time.sleep(0.005)


def long_run(inputs: dict[str, Path], tmp_path: Path, frames: int = 600) -> list[str | Path]:
    clip, detections = write_clip(tmp_path / "long.mp4", frames), write_mot_detections(tmp_path / "long.txt", frames)
    return ["--source", clip, "--detector", detections, "--refiner", inputs["refiner"], "--backend", "torch", "--device",
            "cpu", "--output", tmp_path / "run", "--queue-size", "1"]  # fmt: skip


def start(arguments: list[str | Path]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *map(str, arguments)], cwd=REPO, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def finish(process: subprocess.Popen) -> str:
    try:
        return process.communicate(timeout=CHILD_TIMEOUT_S)[1]
    except subprocess.TimeoutExpired:
        process.kill()  # else it outlives the test
        raise


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_models_load_is_one_line_and_128_plus_its_number(inputs, tmp_path, signum):
    process = start(long_run(inputs, tmp_path))
    until(lambda: catches_sigterm(process.pid), process)  # main() has begun: the models are loading
    assert not (tmp_path / "run").exists()  # no output yet: the run has not started
    process.send_signal(signum)
    stderr = finish(process)
    assert process.returncode == 128 + signum, stderr
    assert error_lines(stderr) == [f"error: interrupted by {signal.Signals(signum).name} before the run started"], stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_frames_flow_keeps_every_finished_frame_and_accounts_for_the_rest(inputs, tmp_path, signum):
    process = start(long_run(inputs, tmp_path))
    jsonl = tmp_path / "run" / "detections.jsonl"
    until(lambda: jsonl.exists() and jsonl.stat().st_size > 0, process)
    process.send_signal(signum)
    stderr = finish(process)
    assert process.returncode == 128 + signum, stderr
    assert error_lines(stderr)[-1].startswith(f"error: interrupted by {signal.Signals(signum).name}; finished frames")
    summary, frames = run_outputs(tmp_path / "run")
    assert summary["status"] == "interrupted" and summary["unfinished_stages"] == []
    assert 0 < len(frames[0]) < 600 and video_frames(tmp_path / "run" / "annotated.mp4") == len(frames[0])


def test_sigkill_leaves_detections_jsonl_whole_to_its_last_line(inputs, tmp_path):
    process = start(long_run(inputs, tmp_path))
    jsonl = tmp_path / "run" / "detections.jsonl"
    until(lambda: jsonl.exists() and jsonl.read_bytes().count(b"\n") >= 3, process)
    process.kill()
    finish(process)
    lines = jsonl.read_bytes().split(b"\n")
    assert lines[-1] == b"" and [json.loads(line)["frame"] for line in lines[:-1]] == list(range(len(lines) - 1))
