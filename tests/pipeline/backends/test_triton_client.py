"""The Triton client without a server: an unreachable address is one line, fast, and exit 2 in the CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.backends import open_backend
from pipeline.backends.triton import DOWN_HINT, HUNG_HINT, SATURATED_HINT, TritonBackend, infer_hint
from pipeline.core.errors import BackendError

REPO = Path(__file__).resolve().parents[3]
CLIP = REPO / "assets" / "one-by-one-person-detection.mp4"


def closed_port() -> int:
    """A port nothing listens on: bound and released, so connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_is_one_line_backend_error():
    url = f"127.0.0.1:{closed_port()}"
    with pytest.raises(BackendError) as caught:  # how fast: CONNECT_TIMEOUT_S bounds it (no wall clock in unit tests)
        TritonBackend(url, "refiner")
    message = str(caught.value)
    assert f"Triton server at {url} is unreachable" in message and "--triton-url" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "message, status, hint",
    [
        ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection refused",
         "StatusCode.UNAVAILABLE", DOWN_HINT),
        ("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED", HUNG_HINT),
        ("Request timeout expired", "StatusCode.UNAVAILABLE", SATURATED_HINT),
    ],
)  # fmt: skip
def test_a_failed_call_says_whether_the_server_is_down_hung_or_saturated(message, status, hint):
    from tritonclient.utils import InferenceServerException

    assert infer_hint(InferenceServerException(message, status)) == hint
    assert len({DOWN_HINT, HUNG_HINT, SATURATED_HINT}) == 3 and "--triton-queue-timeout-ms" not in DOWN_HINT + HUNG_HINT


def test_a_deadline_must_be_positive():
    with pytest.raises(BackendError, match="--triton-timeout-s"):
        TritonBackend(f"127.0.0.1:{closed_port()}", "refiner", timeout_s=0)


def test_triton_backend_needs_a_url(small_onnx):
    with pytest.raises(BackendError, match="--triton-url"):
        open_backend("triton", small_onnx)


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *arguments], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def test_cli_unreachable_server_exits_2_with_one_line(tmp_path):
    url = f"127.0.0.1:{closed_port()}"
    result = run_cli("--source", str(CLIP), "--backend", "triton", "--triton-url", url, "--max-frames", "1",
                     "--device", "cpu", "--output", str(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"Triton server at {url} is unreachable" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_triton_backend_and_url_go_together(tmp_path):
    result = run_cli("--source", str(CLIP), "--backend", "triton", "--output", str(tmp_path / "run"))
    assert result.returncode == 2 and "--triton-url" in result.stderr, result.stderr
