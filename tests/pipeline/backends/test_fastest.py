"""`auto` on the CPU times OpenVINO against ONNX Runtime for real, keeps the faster, remembers it, and falls back."""

from __future__ import annotations

import json
import logging

import pytest

from pipeline.backends import fastest, open_backend


pytestmark = pytest.mark.usefixtures("private_engine_dirs")  # tests/conftest.py


def test_auto_times_the_cpu_runtimes_keeps_the_faster_and_remembers_it(small_checkpoint, caplog):
    pytest.importorskip("openvino")
    with caplog.at_level(logging.INFO, logger="pipeline.backends"):
        backend = open_backend("auto", small_checkpoint, "cpu")
    records = json.loads(fastest.choices_file().read_text())
    (record,) = records.values()
    assert set(record["ms"]) == {"openvino", "onnxruntime"} and all(ms > 0 for ms in record["ms"].values())
    assert backend.name == record["choice"] == min(record["ms"], key=record["ms"].get)
    assert f"backend auto -> {backend.name} on cpu" in caplog.text and "fastest in a timed probe" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.backends"):
        again = open_backend("auto", small_checkpoint, "cpu")
    assert again.name == backend.name and "fastest here when measured on" in caplog.text
    assert json.loads(fastest.choices_file().read_text()) == records  # not measured again


def test_without_openvino_auto_runs_onnxruntime_and_says_why(small_checkpoint, monkeypatch, caplog):
    import pipeline.backends.openvino as openvino_backend

    monkeypatch.setattr(openvino_backend, "openvino", None)  # as after `pip uninstall openvino`
    with caplog.at_level(logging.INFO, logger="pipeline.backends"):
        backend = open_backend("auto", small_checkpoint, "cpu")
    assert backend.name == "onnxruntime"
    assert "openvino is not installed" in caplog.text and "the only CPU runtime that opened" in caplog.text
    assert not fastest.choices_file().exists()  # nothing was measured
