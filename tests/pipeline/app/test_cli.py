"""`python -m pipeline` end to end on a generated clip: outputs, exit codes, errors and signals."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.app.cli import main
from pipeline.app.outputs import choose_output_dir
from pipeline.app.stages import THREAD_PREFIX
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import read_spec
from pipeline.model.checkpoint import replace_spec, save_refiner
from pipeline.model.net import RefinerNet
from pipeline.core.calibration import Calibration, GateModel
import pipeline.app
from tests.pipeline.io.test_sinks import size_limit

REPO = Path(__file__).resolve().parents[3]
STAGES = ("read", "detect", "crop", "refine", "write", "end_to_end")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_refiner(path: Path, class_names: tuple[str, ...] = ("person", "disc"), predicts_iou: bool = True) -> Path:
    torch.manual_seed(0)
    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=class_names, predicts_iou=predicts_iou)
    return save_refiner(RefinerNet(spec), path)


def write_clip(path: Path, frames: int, size: tuple[int, int] = (96, 64)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def write_mot_detections(path: Path, frames: int) -> Path:
    """Two pedestrians per frame (MOT rows, 1-based frames), one of them too small for --min-size 10."""
    rows = [f"{n},-1,{10 + n % 5},8,30,40,0.9\n{n},-1,70,20,6,6,0.5\n" for n in range(1, frames + 1)]
    path.write_text("".join(rows))
    return path


def write_coco_results(path: Path) -> Path:
    """A COCO results file: boxes by image id and category id, no names without the ground truth."""
    path.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [10, 8, 30, 40], "score": 0.9}]))
    return path


def cli(inputs: dict[str, Path], output: Path, *extra: str) -> int:
    return main(
        [
            "--source",
            str(inputs["clip"]),
            "--detector",
            str(inputs["detections"]),
            "--refiner",
            str(inputs["refiner"]),
            "--backend",
            "torch",
            "--device",
            "cpu",
            "--output",
            str(output),
            *extra,
        ]
    )


def test_clip_run_writes_jsonl_video_and_summary(inputs, tmp_path, capsys):
    assert cli(inputs, tmp_path / "run", "--min-size", "10") == 0
    lines = [json.loads(line) for line in (tmp_path / "run" / "detections.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(12))
    first = lines[0]["objects"]
    assert [o["status"] for o in first] == ["gated", "small"] or [o["status"] for o in first] == ["refined", "small"]
    assert first[0]["class"] == "pedestrian" and first[0]["detector_box"] == [11.0, 8.0, 41.0, 48.0]
    assert first[0]["predicted_iou"] is not None and first[1]["refined_box"] is None
    capture = cv2.VideoCapture(str(tmp_path / "run" / "annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    capture.release()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["exit_code"] == 0 and summary["error"] is None
    assert summary["frames"] == {"read": 12, "processed": 12, "dropped": 0, "unfinished": 0, "lost": 0, "unreadable": 0}
    assert set(summary["latency_ms"]) == set(STAGES)
    assert all(
        summary["latency_ms"][stage]["count"] == 12 and summary["latency_ms"][stage]["p95_ms"] is not None for stage in STAGES
    )
    refiner = summary["refiner"]
    assert refiner["backend"] == "torch" and refiner["device"] == "cpu" and refiner["policy"] == "blend"
    assert refiner["spec"]["class_names"] == ["person", "disc"] and refiner["class_mapping"] == {"pedestrian": "person"}
    assert summary["objects"]["small"] == 12 and summary["fps"] > 0
    printed = capsys.readouterr()
    assert "12 frames in" in printed.out and "FPS" in printed.out and "end_to_end" in printed.out and "12 small" in printed.out
    assert f"outputs: {tmp_path / 'run'}/" in printed.out and "frames in" not in printed.err  # results on stdout


def test_max_frames_no_refine_and_policy(inputs, tmp_path):
    assert cli(inputs, tmp_path / "baseline", "--max-frames", "5", "--no-refine") == 0
    lines = (tmp_path / "baseline" / "detections.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(o["status"] == "disabled" for o in json.loads(lines[0])["objects"])
    summary = json.loads((tmp_path / "baseline" / "summary.json").read_text())
    assert summary["refiner"] is None and set(summary["latency_ms"]) == {"read", "detect", "write", "end_to_end"}

    assert cli(inputs, tmp_path / "replace", "--max-frames", "2", "--policy", "replace") == 0
    objects = json.loads((tmp_path / "replace" / "detections.jsonl").read_text().splitlines()[0])["objects"]
    assert [o["status"] for o in objects] == ["refined", "refined"]


def test_track_writes_ids_smoothed_boxes_and_reuses_refinements(inputs, tmp_path):
    assert cli(inputs, tmp_path / "run", "--track", "--smooth", "--reuse", "--policy", "replace") == 0
    lines = [json.loads(line) for line in (tmp_path / "run" / "detections.jsonl").read_text().splitlines()]
    assert all([o["track"] for o in line["objects"]] == [1, 2] for line in lines)  # one id per pedestrian, all along
    assert all(o["track_box"] is not None for line in lines for o in line["objects"])
    statuses = {o["status"] for line in lines for o in line["objects"]}
    assert statuses == {"refined", "reused"}  # the standing one reuses, the one that jumps back is refined again
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["tracks"]["tracks"] == 2 and summary["tracks"]["boxes_reused"] == summary["objects"]["reused"] > 0
    assert cli(inputs, tmp_path / "ids", "--track", "--no-refine", "--max-frames", "3") == 0
    objects = json.loads((tmp_path / "ids" / "detections.jsonl").read_text().splitlines()[-1])["objects"]
    assert [o["track"] for o in objects] == [1, 2] and "track_box" not in objects[0]


def test_a_refiner_calibrated_to_leave_boxes_alone_says_so(inputs, tmp_path, capsys):
    """`benchmarks calibrate` writes an infinite margin where refining did not pay; a run with that file warns, moves nothing."""
    refiner = tiny_refiner(tmp_path / "unhelpful.safetensors")
    spec = read_spec(refiner)
    replace_spec(refiner, dataclasses.replace(spec, profiles={"generic": Calibration(gain_margin=math.inf, fitted_on="a precise detector")}))
    assert cli({**inputs, "refiner": refiner}, tmp_path / "run", "--max-frames", "3") == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["objects"].get("refined", 0) == 0 and summary["objects"]["gated"] > 0
    assert len(summary["warnings"]) == 1 and "(a precise detector) found that refining did not pay" in summary["warnings"][0]
    assert "warning: this refiner's calibration" in capsys.readouterr().err


def test_the_profile_gate_and_budget_skip_boxes_before_the_network_and_say_so(inputs, tmp_path, capsys):
    """Two pedestrians a frame: a budget of one skips the other; a profile whose gate expects no gain skips both."""
    assert cli(inputs, tmp_path / "budget", "--max-frames", "3", "--max-refine", "1") == 0
    summary = json.loads((tmp_path / "budget" / "summary.json").read_text())
    assert summary["refinement"]["sent_to_network"] == 3 and summary["refinement"]["skipped"] == {"gain": 0, "budget": 3}
    assert summary["refiner"]["profile"] == "generic" and summary["refiner"]["max_refine"] == 1
    assert "3 over the --max-refine budget" in capsys.readouterr().out  # results on stdout

    refiner = tiny_refiner(tmp_path / "gated.safetensors")
    never = GateModel((0.0, math.inf), (0.0,), (0.0,) * 4, (0.0,) * 4, threshold=math.inf)
    replace_spec(refiner, dataclasses.replace(read_spec(refiner), profiles={"generic": Calibration(), "yolov8n": Calibration(gate=never)}))
    assert cli({**inputs, "refiner": refiner}, tmp_path / "gated", "--max-frames", "3", "--profile", "yolov8n") == 0
    summary = json.loads((tmp_path / "gated" / "summary.json").read_text())
    assert summary["refinement"] == {"sent_to_network": 0, "refined": 0, "gated": 0, "skipped": {"gain": 6, "budget": 0}}
    assert "refiner: 0 boxes sent" in capsys.readouterr().out
    assert cli({**inputs, "refiner": refiner}, tmp_path / "unknown", "--profile", "yolo11s") == 2
    assert "no calibration profile 'yolo11s'; it has generic, yolov8n" in capsys.readouterr().err


def test_show_without_a_display_warns_and_runs_on(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert cli(inputs, tmp_path / "run", "--show", "--max-frames", "2", "--no-refine") == 0
    assert "warning: --show ignored: no display found" in capsys.readouterr().err
    assert len((tmp_path / "run" / "detections.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--source", "missing.mp4", "--no-refine", "--detector", "x.pt"], "is not a video file"),
        (["--source", "{clip}", "--detector", "{coco_results}", "--refiner", "{refiner}", "--backend", "torch"], "pass --coco-gt"),
        (["--source", "missing.mp4", "--detector", "{detections}"], "is not a video file"),  # the source is checked first
        (["--source", "{clip}", "--detector", "nothing.txt", "--no-refine"], "detections file nothing.txt does not exist"),
        (["--source", "{clip}", "--detector", "{detections}", "--refiner", "missing.safetensors"], "does not exist"),
        (
            ["--source", "{clip}", "--detector", "{detections}", "--refiner", "{disc_refiner}", "--backend", "torch"],
            "--no-refine",
        ),
        (
            ["--source", "{clip}", "--no-refine", "--detector", "{detections}", "--max-frames", "0"],
            "--max-frames must be at least 1",
        ),
        (
            [
                "--source",
                "{clip}",
                "--detector",
                "{detections}",
                "--refiner",
                "{plain_refiner}",
                "--backend",
                "torch",
                "--policy",
                "gate",
            ],
            "predicts IoU",
        ),
        (["--source", "{clip}", "--detector", "{detections}", "--smooth"], "add --track"),
    ],
)
def test_input_errors_are_one_line_and_exit_2(inputs, tmp_path, capsys, arguments, message):
    arguments = [a.format(**inputs) for a in arguments]
    assert main([*arguments, "--output", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "run").exists()  # nothing is created before the inputs are known good


def test_existing_output_is_never_overwritten(inputs, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "detections.jsonl").write_text("an earlier run\n")
    assert cli(inputs, tmp_path / "run") == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "run" / "detections.jsonl").read_text() == "an earlier run\n"


def test_default_output_is_a_new_timestamped_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = choose_output_dir(None)
    assert first.parent == Path("runs")
    first.mkdir(parents=True)
    assert choose_output_dir(None) != first


def crowded_detections(path: Path, frames: int, boxes: int) -> Path:
    """A MOT det.txt with `boxes` boxes on every frame: long detections.jsonl lines."""
    rows = [f"{frame},-1,{1 + box % 40},{1 + box % 20},30,30,0.9" for frame in range(1, frames + 1) for box in range(boxes)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_failure_while_running_exits_1_with_summary_and_debug_traceback(inputs, tmp_path, capsys):
    # A 48 KiB file size limit: the first detections.jsonl line (~36 KiB, 200 boxes) fits, but the video sink sees
    # too little room left for a playable video and stops the run before its first frame.
    detections = crowded_detections(tmp_path / "crowded.txt", 12, 200)
    arguments = ["--source", str(inputs["clip"]), "--detector", str(detections), "--no-refine", "--output", str(tmp_path / "run")]
    with size_limit(48 * 1024):
        assert main(arguments) == 1
    printed = capsys.readouterr()
    err = printed.err.strip().splitlines()
    video = tmp_path / "run" / "annotated.mp4"
    assert err[-1].startswith(f"error: write stage failed: cannot write {video}: the file size limit")  # last, after FPS
    assert [line for line in err if line.startswith("error")] == err[-1:] and "FPS" in printed.out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "file size limit" in summary["error"] and summary["unfinished_stages"] == []
    files = summary["files"]
    assert files["detections.jsonl"] == {"frames": 1, "error": None} and files["annotated.mp4"]["frames"] == 0
    assert files["annotated.mp4"]["error"] in summary["error"]
    assert len((tmp_path / "run" / "detections.jsonl").read_text().splitlines()) == 1

    with size_limit(48 * 1024):
        assert main([*arguments[:-1], str(tmp_path / "debug"), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_demo_source_calls_the_demo_hook(monkeypatch):
    calls = []
    fake_demo = types.SimpleNamespace(run_demo=lambda config: calls.append(config) or 0, DEFAULTS={"demo": {}, "synthetic": {}})
    monkeypatch.setitem(sys.modules, "pipeline.app.demo", fake_demo)
    monkeypatch.setattr(pipeline.app, "demo", fake_demo, raising=False)
    assert main(["--source", "demo", "--max-frames", "3"]) == 0
    assert main(["--source", "synthetic"]) == 0
    assert calls[0].source == "demo" and calls[0].max_frames == 3 and calls[1].source == "synthetic"


def test_the_demos_take_every_run_option():
    from pipeline.app.cli import build_parser, config_from_args
    from pipeline.app.demo import DEFAULTS

    options = ["--no-refine", "--flip-tta", "--iterations", "3", "--gpu-crops", "--queue-size", "7", "--imgsz", "416"]
    config = config_from_args(build_parser().parse_args(["--source", "synthetic", *options]), ["synthetic"], DEFAULTS["synthetic"])
    assert (config.refine, config.flip_tta, config.iterations, config.gpu_crops, config.queue_size) == (False, True, 3, True, 7)
    assert config.imgsz == 416 and config.conf == DEFAULTS["synthetic"]["conf"]  # given wins, else the demo's default


def long_run_arguments(tmp_path: Path, inputs: dict[str, Path]) -> list[str]:
    """A run long enough (600 frames, one frame per queue) to be interrupted in the middle."""
    clip = write_clip(tmp_path / "long.mp4", 600)
    detections = write_mot_detections(tmp_path / "det.txt", 600)
    return [
        "--source", str(clip), "--detector", str(detections), "--refiner", str(inputs["refiner"]),
        "--backend", "torch", "--device", "cpu", "--output", str(tmp_path / "run"), "--queue-size", "1",
    ]  # fmt: skip


def wait_for_first_line(jsonl: Path, still_running) -> None:
    deadline = time.monotonic() + 300  # a bound for a stuck child on a loaded machine, not a speed requirement
    while not (jsonl.exists() and jsonl.read_text()) and still_running() and time.monotonic() < deadline:
        time.sleep(0.02)


def assert_interrupted_run(run_dir: Path, signum: int) -> None:
    """Every stage stopped (none left running past the grace period), every line whole and in order, and every
    frame read accounted for: written, or in flight at the stop (unfinished)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["exit_code"] == 128 + signum and summary["unfinished_stages"] == []
    lines = (run_dir / "detections.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(len(lines)))  # every line whole, in order
    frames = summary["frames"]
    assert frames["processed"] == len(lines) < 600 and frames["dropped"] == frames["lost"] == 0
    assert frames["read"] == frames["processed"] + frames["unfinished"] and frames["unfinished"] >= 0


def test_ctrl_c_stops_the_cli_flushes_and_exits_130(tmp_path, inputs):
    command = [sys.executable, "-m", "pipeline", *long_run_arguments(tmp_path, inputs)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_first_line(tmp_path / "run" / "detections.jsonl", lambda: process.poll() is None)
    assert process.poll() is None, process.communicate()[1]
    process.send_signal(signal.SIGINT)
    try:  # the interpreter's exit (torch teardown) may take a while longer on a loaded machine
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()  # else it outlives the test, blocked writing to a pipe nobody reads
        raise
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted by SIGINT; finished frames are in")
    assert_interrupted_run(tmp_path / "run", signal.SIGINT)


def test_sigterm_stops_every_stage_and_exits_143(tmp_path, inputs):
    def terminate_after_first_line() -> None:
        wait_for_first_line(tmp_path / "run" / "detections.jsonl", lambda: True)
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the run, in the main thread

    handler_before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=terminate_after_first_line, daemon=True).start()
    assert main(long_run_arguments(tmp_path, inputs)) == 143
    assert_interrupted_run(tmp_path / "run", signal.SIGTERM)
    assert [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)] == []
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the run's handler is removed again


def test_a_missing_camera_is_one_line_not_opencvs_warnings(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pipeline", "--source", "7", "--output", str(tmp_path / "run")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: cannot open camera 7; check the camera is connected and not used by another program"]


def test_every_option_in_help_says_its_default():
    from pipeline.app.cli import build_parser

    for action in build_parser()._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in (action.help or "") and len(action.help) > 20, action.option_strings


def test_help_loads_no_model_runtime(tmp_path):
    """--help must stay instant (issue 23: it took 4-5 s): no torch, Ultralytics or inference runtime behind it."""
    heavy = ("torch", "ultralytics", "onnxruntime", "timm", "tensorrt", "tensorrt_rtx", "openvino", "tritonclient")
    probe = (
        "import sys\nfrom pipeline.app.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(name for name in {heavy!r} if name in sys.modules), file=sys.stderr)"
    )
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True, timeout=120, check=True)
    assert "usage: python -m pipeline" in done.stdout and done.stderr.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_precision_fp32_keeps_openvino_at_full_precision_and_the_summary_says_which(inputs, tmp_path):
    assert cli(inputs, tmp_path / "run", "--max-frames", "2", "--backend", "openvino", "--precision", "fp32") == 0
    refiner = json.loads((tmp_path / "run" / "summary.json").read_text())["refiner"]
    assert refiner["backend"] == "openvino" and refiner["precision"] == "fp32"
