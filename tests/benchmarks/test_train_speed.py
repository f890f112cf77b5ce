"""The training-cost benchmark times real steps and reports every setting asked for."""

import json

import pytest

from benchmarks.__main__ import main


@pytest.mark.usefixtures("one_torch_thread")
def test_train_speed_reports_each_setting(tmp_path):
    out = tmp_path / "speed.json"
    main(["train-speed", "--backbones", "lite0", "--sizes", "64", "--freeze", "0,3", "--batches", "2", "--steps", "1",
          "--threads", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["size"], r["frozen_stages"]) for r in rows] == [(64, 0), (64, 3)]
    assert all(r["ms_per_sample"] > 0 for r in rows)
    assert "ms / sample" in out.with_suffix(".md").read_text()
