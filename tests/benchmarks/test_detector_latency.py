"""The detector benchmark: committed model files side by side on real crowd and bundled-clip frames."""

from __future__ import annotations

import json

from benchmarks.__main__ import main
import pytest

from pipeline.model.defaults import DETECTOR_PT, MODELS_DIR


@pytest.mark.slow
def test_detector_report_times_each_file_and_compares_boxes_with_the_first(mot17_mini, openvino_detector, tmp_path):
    out = tmp_path / "detector.json"
    detectors = [str(MODELS_DIR / DETECTOR_PT), str(openvino_detector)]
    main(["detector", "--frames", "2", "--warmup", "0", "--detectors", ",".join(detectors), "--data", str(mot17_mini), "--out", str(out)])
    report = json.loads(out.read_text())
    crowd, bundled = report["clips"]["crowd"], report["clips"]["bundled"]
    assert crowd["frame_size"] == "1920x1080" and bundled["frame_size"] == "768x432" and crowd["frames"] == 2
    reference, exported = (crowd["detectors"][name] for name in detectors)
    assert reference["matched_share"] == 1.0 and reference["matched_iou_min"] == 1.0  # itself
    assert exported["p50_ms"] > 0 and exported["boxes_per_frame"] > 3 and exported["matched_iou_min"] > 0.9
