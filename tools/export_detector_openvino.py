"""Export the committed COCO YOLOv8n (models/yolov8n-coco.pt) to OpenVINO IR, offline: the CPU default detector.

FP32 weights and dynamic input shapes: Ultralytics then letterboxes a 16:9 frame to 640x384 as it does
for the .pt (a static 640x640 export does 1.7x the work and was slower), and the boxes match the .pt's
(tests/pipeline/io/test_detectors.py). FP16 weights or NNCF int8 moved boxes more (see models/README.md).
Writes models/yolov8n-coco_openvino_model/ (Ultralytics names the folder after the .pt).

    .venv/bin/python tools/export_detector_openvino.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.io.ultralytics_offline import import_ultralytics  # noqa: E402
from pipeline.model.defaults import DETECTOR_PT, MODELS_DIR  # noqa: E402


def main() -> None:
    ultralytics = import_ultralytics()
    exported = ultralytics.YOLO(str(MODELS_DIR / DETECTOR_PT), task="detect").export(format="openvino", imgsz=640, dynamic=True)
    print(f"wrote {exported}")


if __name__ == "__main__":
    main()
