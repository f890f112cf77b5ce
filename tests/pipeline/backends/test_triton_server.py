"""A real Triton server (PyTriton's bundled tritonserver 2.51, CPU) serving build_engine.py --triton-repo's model.

The server runs the generated repository's model (name, tensors, batching, queue policy and spec
parameter from its config.pbtxt) with ONNX Runtime inside Triton's Python backend
(tools/pytriton_refiner_server.py); the pipeline's TritonBackend must return what the in-process
ONNX Runtime backend returns for the same ONNX file. PyTriton pins numpy<2, so the server gets its
own virtualenv, created once under ~/.cache/bbrefinement/ and reused (about a minute and ~500 MB the first
time, announced on the terminal when it starts). Skip these tests: pytest -m "not triton_server".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.backends import open_backend
from pipeline.backends.onnxruntime import OnnxRuntimeBackend
from pipeline.backends.triton import TritonBackend
from pipeline.core.errors import BackendError
from pipeline.model.artifacts import ModelFile, read_spec
from pipeline.model.defaults import default_refiner

pytestmark = [pytest.mark.slow, pytest.mark.triton_server]

REPO = Path(__file__).resolve().parents[3]
REFINER = default_refiner()
OTHER_REFINER = REPO / "engines" / "refiner-synthetic-mobilenetv3_small_100-128.safetensors"
SERVER_SCRIPT = REPO / "tools" / "pytriton_refiner_server.py"
VENV = Path.home() / ".cache" / "bbrefinement" / "pytriton-venv"
# onnxruntime 1.19.2: the newest with Python 3.11 wheels built for numpy 1.x, which pytriton 0.7.0 pins.
REQUIREMENTS = ("nvidia-pytriton==0.7.0", "onnxruntime==1.19.2", "numpy<2")
MAX_BATCH = 8
# Generous: this CPU (2 cores, shared with training) can take over the default 100 ms to start a batch
# while four clients queue, and the rejecting policy would then (rightly) refuse their requests.
QUEUE_TIMEOUT_MS = 10_000
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def pytriton_python(config: pytest.Config) -> Path:
    """The virtualenv's interpreter, created and filled once; reused while its requirements are unchanged."""
    python, stamp = VENV / "bin" / "python", VENV / "bbrefinement-requirements.txt"
    wanted = "\n".join(REQUIREMENTS)
    if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    announce(config, f"creating a PyTriton virtualenv for the Triton server tests in {VENV} (downloads ~500 MB once, "
                     f"about a minute); skip them with: pytest -m \"not triton_server\"")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
    started = time.perf_counter()
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *REQUIREMENTS],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if install.returncode != 0:
        if not pypi_reachable():
            pytest.skip(f"PyPI is unreachable, cannot create the PyTriton virtualenv: {install.stderr.strip()[-300:]}")
        pytest.fail(f"pip install {' '.join(REQUIREMENTS)} failed:\n{install.stderr[-3000:]}")
    stamp.write_text(wanted)
    print(f"PyTriton virtualenv created in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return python


def announce(config: pytest.Config, message: str) -> None:
    """A line on the terminal now, through pytest's output capture, and again in the warnings summary."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{message}", yellow=True, bold=True)
    warnings.warn(message, stacklevel=2)


def pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/nvidia-pytriton/", timeout=15).close()
    except (urllib.error.URLError, OSError):
        return False
    return True


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def build_repository(out: Path) -> Path:
    """build_engine.py as a user runs it: ONNX, a TensorRT-RTX engine (no GPU needed) and the repository."""
    result = subprocess.run(
        [sys.executable, "build_engine.py", "--refiner", str(REFINER), "--out", str(out), "--max-batch", str(MAX_BATCH),
         "--compute-capability", "sm86", "--triton-repo", str(out / "repo"),
         "--triton-queue-timeout-ms", str(QUEUE_TIMEOUT_MS)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / "repo" / f"{REFINER.stem}-trt" / "1" / "model.plan").is_file()
    assert f"default_timeout_microseconds: {QUEUE_TIMEOUT_MS * 1000}" in (out / "repo" / REFINER.stem / "config.pbtxt").read_text()
    return out / "repo"


class Server:
    """tools/pytriton_refiner_server.py in its own process group, stopped (then killed) on exit."""

    def __init__(self, python: Path, model_dir: Path, log: Path) -> None:
        grpc_port, http_port, metrics_port = free_ports(3)
        self.url, self.log = f"127.0.0.1:{grpc_port}", log
        libdir = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        # The bundled server's Python stub links libpython: this interpreter's, not the system's.
        env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))}
        command = [str(python), str(SERVER_SCRIPT), "--model-dir", str(model_dir), "--grpc-port", str(grpc_port),
                   "--http-port", str(http_port), "--metrics-port", str(metrics_port)]  # fmt: skip
        with log.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, model: str) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < START_TIMEOUT_S:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                TritonBackend(self.url, model).close()
                return time.perf_counter() - started
            except BackendError:
                time.sleep(0.5)
        pytest.fail(f"the server was not ready in {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group this test started: the script and its tritonserver
            self.process.wait(timeout=30)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory, pytestconfig) -> Iterator[tuple[Server, Path]]:
    """(the running server, ONNX file the served model was made from)."""
    python = pytriton_python(pytestconfig)
    out = tmp_path_factory.mktemp("triton")
    repository = build_repository(out)
    server = Server(python, repository / REFINER.stem, out / "server.log")
    try:
        print(f"server ready in {server.wait_ready(REFINER.stem):.1f} s", file=sys.stderr)
        yield server, out / f"{REFINER.stem}.onnx"
    finally:
        server.stop()
    assert server.process.returncode is not None


@pytest.fixture(scope="module")
def served(server) -> tuple[str, Path]:
    """(gRPC URL, ONNX file the served model was made from)."""
    return server[0].url, server[1]


def random_batch(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    size = read_spec(REFINER).input_size
    crops = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    vectors = np.zeros((count, 5), dtype=np.float32)
    vectors[:, 0] = 1.0
    vectors[:, 1:] = rng.uniform(0.3, 0.7, (count, 4))
    return crops, vectors


def test_triton_backend_matches_in_process_onnxruntime(served):
    url, onnx_path = served
    remote = open_backend("triton", onnx_path, max_batch=32, triton_url=url)  # model name: the file's stem
    local = OnnxRuntimeBackend(ModelFile.read(onnx_path), "cpu", 32, threads=1)
    assert remote.spec == local.spec and remote.max_batch == MAX_BATCH  # capped by the served max_batch_size
    crops, vectors = random_batch(21, seed=3)  # three requests: 8 + 8 + 5
    expected = local.refine(crops, vectors)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(remote.refine(crops, vectors), expected, rtol=0, atol=1e-4)

    def one_client(index: int) -> np.ndarray:  # concurrent clients: the dynamic batcher may merge their requests
        client = open_backend("triton", onnx_path, triton_url=url)
        try:
            return client.refine(*random_batch(3, seed=index))
        finally:
            client.close()

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one_client, index) for index in range(4)]
        for index, future in enumerate(futures):
            expected = local.refine(*random_batch(3, seed=index))
            np.testing.assert_allclose(future.result(timeout=60), expected, rtol=0, atol=1e-4)

    statistics = remote.server_statistics()
    assert statistics["requests"] >= 3 + 4 and statistics["batches"] >= 1
    assert statistics["compute_ms_mean"] > 0 and statistics["queue_ms_mean"] >= 0
    remote.close()


def test_server_with_another_spec_is_refused(served):
    url, onnx_path = served
    refused = f"serves {read_spec(REFINER).name}, not {read_spec(OTHER_REFINER).name};"
    with pytest.raises(BackendError, match=refused):
        open_backend("triton", OTHER_REFINER, triton_url=url, triton_model=onnx_path.stem)


def test_pipeline_cli_runs_on_the_server_and_reports_its_time(served, tmp_path):
    url, _ = served
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--source", str(REPO / "assets" / "one-by-one-person-detection.mp4"),
         "--refiner", str(REFINER), "--backend", "triton", "--triton-url", url, "--max-frames", "4", "--device", "cpu",
         "--output", str(tmp_path / "run")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["refiner"]["backend"] == "triton"
    server = summary["refiner"]["server"]
    assert server["model"] == REFINER.stem and server["requests"] >= 1 and server["compute_ms_mean"] > 0
    assert f"triton {REFINER.stem} at {url}: " in result.stdout  # the run's printed summary (results on stdout)


@contextlib.contextmanager
def hung(server: Server) -> Iterator[None]:
    """The server's process group stopped (SIGSTOP): connections open, nothing answers; continued afterwards."""
    os.killpg(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(server.process.pid, signal.SIGCONT)


def test_a_hung_server_is_an_error_at_the_deadline_that_says_hung(server):
    process, onnx_path = server
    url = process.url
    remote = open_backend("triton", onnx_path, triton_url=url, triton_timeout_s=1.0)
    try:
        crops, vectors = random_batch(2, seed=0)
        remote.refine(crops, vectors)  # answered while running
        with hung(process), pytest.raises(BackendError) as caught:
            remote.refine(crops, vectors)
        message = str(caught.value)
        assert "did not answer within the deadline" in message and "--triton-timeout-s" in message, message
        assert "--triton-queue-timeout-ms" not in message and "\n" not in message
        remote.refine(crops, vectors)  # answered again once the server continues
    finally:
        remote.close()


def start_cli(url: str, run_dir: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipeline", "--source", str(REPO / "assets" / "one-by-one-person-detection.mp4"),
               "--refiner", str(REFINER), "--backend", "triton", "--triton-url", url, "--device", "cpu",
               "--max-frames", "400", "--queue-size", "1", "--output", str(run_dir), *extra]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip


def wait_for_lines(jsonl: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (jsonl.exists() and jsonl.read_bytes().count(b"\n") >= count):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.02)


def communicate_or_kill(process: subprocess.Popen) -> str:
    """The child's stderr once it exits; killed (and its stderr shown) if it does not within STOP_TIMEOUT_S."""
    try:
        return process.communicate(timeout=STOP_TIMEOUT_S)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the child did not exit in {STOP_TIMEOUT_S} s; stderr:\n{process.communicate()[1][-3000:]}")


def finished_run(run_dir: Path) -> tuple[dict, int]:
    """summary.json and the frames of detections.jsonl (whole lines, consecutive), which the video must hold too."""
    summary = json.loads((run_dir / "summary.json").read_text())
    lines = (run_dir / "detections.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(len(lines)))
    frames = summary["frames"]
    assert frames["read"] == frames["processed"] + frames["dropped"] + frames["unfinished"] and frames["processed"] == len(lines)
    capture = cv2.VideoCapture(str(run_dir / "annotated.mp4"))
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    assert decoded == len(lines)  # the video of the finished frames plays
    return summary, len(lines)


def test_ctrl_c_while_a_call_hangs_exits_before_the_server_answers_with_a_playable_video(server, tmp_path):
    process_server, _ = server
    cli = start_cli(process_server.url, tmp_path / "run", "--triton-timeout-s", "600")  # the deadline must not end it
    wait_for_lines(tmp_path / "run" / "detections.jsonl", 3, cli)
    with hung(process_server):
        time.sleep(5.0)  # the refine stage's next call is (very likely) waiting on the stopped server by now
        cli.send_signal(signal.SIGINT)
        # the child must leave while the server is still stopped: it does not wait for a hung call
        stderr = communicate_or_kill(cli)
    assert cli.returncode == 130, stderr
    assert [line for line in stderr.splitlines() if line.startswith("error:")][-1].startswith("error: interrupted by SIGINT")
    summary, frames = finished_run(tmp_path / "run")
    assert summary["status"] == "interrupted" and 0 < frames < 400


def test_a_hung_server_fails_the_run_at_the_deadline_with_one_line(server, tmp_path):
    process_server, _ = server
    cli = start_cli(process_server.url, tmp_path / "run", "--triton-timeout-s", "2")
    wait_for_lines(tmp_path / "run" / "detections.jsonl", 3, cli)
    with hung(process_server):
        stderr = communicate_or_kill(cli)
    assert cli.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "did not answer within the deadline" in errors[0] and "--triton-timeout-s" in errors[0], stderr
    summary, frames = finished_run(tmp_path / "run")
    assert summary["status"] == "failed" and summary["unfinished_stages"] == [] and 0 < frames < 400
