"""Export the committed COCO YOLOv8n (models/yolov8n-coco.pt) to OpenVINO IR, offline, for `--detector`.

Writes models/yolov8n-coco_openvino_model/ (FP32, dynamic shapes; pipeline.io.detectors.export_openvino).
Not committed and not the default: it detects faster alone but slowed the refiner sharing the cores
(models/README.md).

    .venv/bin/python tools/export_detector_openvino.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.io.detectors import export_openvino  # noqa: E402
from pipeline.model.defaults import DETECTOR_PT, MODELS_DIR  # noqa: E402

if __name__ == "__main__":
    print(f"wrote {export_openvino(MODELS_DIR / DETECTOR_PT)}")
