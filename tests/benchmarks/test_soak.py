"""The soak benchmark end to end, short: two streams of looped real frames, replayed YOLOv8n boxes, the committed refiner."""

from __future__ import annotations

import json

from benchmarks.__main__ import main


def test_soak_accounts_for_every_frame_and_reports_memory_and_threads(tmp_path):
    out = tmp_path / "soak.json"
    main(["soak", "--streams", "2", "--frames", "40", "--clip-frames", "4", "--sample-s", "0.2", "--out", str(out)])
    report = json.loads(out.read_text())
    frames = report["frames"]
    assert frames == {"read": 80, "processed": 80, "dropped": 0, "unfinished": 0, "lost": 0, "holds": True}
    assert report["status"] == "completed" and report["passed"] and all(report["checks"].values())
    assert report["objects"].get("refined", 0) + report["objects"].get("gated", 0) > 0  # real boxes were refined
    assert report["samples"] and all(sample["rss_mib"] > 0 and sample["threads"] > 0 for sample in report["samples"])
    assert out.with_suffix(".md").read_text().startswith("# Soak: 2 streams x 40 frames")
