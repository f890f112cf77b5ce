"""Detectors: one frame in, one validated `Detections` out, whatever produced the boxes.

The refiner does not care where boxes come from, so the pipeline talks to a two-member
interface (`class_names`, `detect(frame)`). Implementations: any Ultralytics YOLO model file
(here) and replays of saved detections (pipeline.io.detection_files), which make runs repeatable
and let the refiner be measured on another detector's output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.core.calibration import GENERIC_PROFILE
from pipeline.core.errors import DetectorError
from pipeline.core.types import Detections, Frame

DETECTION_FILE_SUFFIXES = (".json", ".txt")
# OpenVINO CPU properties for a detector inside the pipeline: half the cores (the refiner's ONNX Runtime takes the
# same share), threads not pinned to cores that the crop and refine threads also run on.
OPENVINO_CPU_SHARE = {"INFERENCE_NUM_THREADS": max(1, (os.cpu_count() or 2) // 2), "ENABLE_CPU_PINNING": False}
# An Ultralytics model family and size in a file name: yolov8n, yolov5su, yolo11s, yolov10x, ...
ULTRALYTICS_PROFILE = re.compile(r"yolo(?:v\d+|\d+)[nsmlxbct]u?")


class Detector(Protocol):
    """What the pipeline needs from a detector.

    `profile`: the name of the refiner calibration profile fitted on this detector's boxes
    ("yolov8n", ...), "generic" for detectors nobody calibrated.
    """

    class_names: tuple[str, ...]
    profile: str

    def detect(self, frame: Frame) -> Detections: ...


class UltralyticsDetector:
    """Any model Ultralytics' YOLO() loads (.pt, .onnx, .engine, ...), set up to never go online."""

    def __init__(
        self, model_path: Path, imgsz: int = 640, conf: float = 0.25, device: str | None = None, warm_up: bool = True
    ) -> None:
        from pipeline.io.ultralytics_offline import import_ultralytics

        model_path = Path(model_path)
        if not model_path.exists():
            raise DetectorError(f"detector {model_path} does not exist; pass --detector with a YOLO model file")
        ultralytics = import_ultralytics()
        self._options = {"imgsz": imgsz, "conf": conf, "device": _ultralytics_device(device), "verbose": False}
        self._imgsz, self._device, self.description = imgsz, device, str(model_path)
        with self._as_detector_error():
            self._model = ultralytics.YOLO(str(model_path), task="detect")
            names = self._model.names
        self.class_names = tuple(names[i] for i in sorted(names))
        self.profile = profile_of_model(model_path)
        if warm_up:
            self.warm_up()

    def warm_up(self) -> None:
        """The first predict sets the model up (7 s on a 2-core CPU): done before frames flow, not as the first
        frame's latency; a run calls it after the class check, so a wrong detector fails fast."""
        with self._as_detector_error():
            self._model.predict(np.zeros((self._imgsz, self._imgsz, 3), np.uint8), **self._options)
            share_cpu_with_the_refiner(self._model, Path(self.description))

    @contextmanager
    def _as_detector_error(self) -> Iterator[None]:
        try:
            yield
        except Exception as error:  # Ultralytics raises many types for an unreadable model or a bad device
            raise DetectorError(
                f"Ultralytics cannot run {self.description} on device {self._device or 'auto'} ({error}); "
                "is it a YOLO detection model?"
            ) from error

    def detect(self, frame: Frame) -> Detections:
        return Detections.from_ultralytics(self._model.predict(frame.image, **self._options)[0].boxes, self.class_names)

    def detect_many(self, frames: Sequence[Frame]) -> list[Detections]:
        """One batched predict for the frames of many streams (a cycle); 10-20% cheaper per frame than one call
        each on a 2-core CPU (8 frames), far more on a GPU."""
        results = self._model.predict([frame.image for frame in frames], **self._options)
        return [Detections.from_ultralytics(result.boxes, self.class_names) for result in results]


def share_cpu_with_the_refiner(model: object, model_path: Path) -> None:
    """Recompile an OpenVINO export on half the cores, unpinned: Ultralytics compiles it on all of them, pinned.

    In the pipeline the detector shares the CPU with the crop threads and the refiner (which ONNX
    Runtime runs on half the cores); on 2 cores, one unpinned OpenVINO thread detected a crowd clip
    at 1.7x the frame rate of the default compile, which fought the other stages for pinned cores
    (README, "Crowds"). Reaches into Ultralytics' OpenVINO backend (its compile function, a partial of
    openvino.Core.compile_model, and the compiled model); tests/pipeline/io/test_detectors.py checks it.
    """
    backend = getattr(getattr(getattr(model, "predictor", None), "model", None), "backend", None)
    compile_model = getattr(backend, "compile_model", None)
    if not hasattr(backend, "ov_compiled_model") or not isinstance(compile_model, partial):
        return  # not OpenVINO, or an Ultralytics that builds it otherwise: left as Ultralytics made it
    config = {**compile_model.keywords.get("config", {}), **OPENVINO_CPU_SHARE}
    backend.compile_model = partial(compile_model, config=config)
    xml = model_path if model_path.suffix == ".xml" else next(model_path.glob("*.xml"))  # Ultralytics takes either
    backend.ov_compiled_model = backend.compile_model(compile_model.func.__self__.read_model(str(xml)))


def export_openvino(model_path: Path, imgsz: int = 640) -> Path:
    """Export an Ultralytics .pt to OpenVINO IR beside it, offline; returns the `<stem>_openvino_model` folder.

    FP32 weights, dynamic input shape: Ultralytics then letterboxes a 16:9 frame to 640x384 as for the
    .pt (a static 640x640 export does 1.7x the work), and the boxes stay the .pt's (models/README.md).
    """
    from pipeline.io.ultralytics_offline import import_ultralytics

    model = import_ultralytics().YOLO(str(model_path), task="detect")
    return Path(model.export(format="openvino", imgsz=imgsz, dynamic=True))


def profile_of_model(model_path: Path) -> str:
    """The calibration profile of an Ultralytics model, by the family and size in its file name
    (models/yolov8n-coco.pt -> "yolov8n"); "generic" where the name says neither."""
    match = ULTRALYTICS_PROFILE.search(Path(model_path).stem.lower())
    return match.group(0) if match else GENERIC_PROFILE


def open_detector(
    path: Path,
    imgsz: int = 640,
    conf: float = 0.25,
    device: str | None = None,
    coco_gt: Path | None = None,
    warm_up: bool = True,
) -> Detector:
    """A detections file (.json COCO results, .txt MOT det.txt) is replayed; anything else goes to Ultralytics
    (warm_up False: the caller calls `detector.warm_up()` when it is ready to wait for it)."""
    path = Path(path)
    if path.suffix.lower() in DETECTION_FILE_SUFFIXES:
        from pipeline.io.detection_files import open_detections_file

        return open_detections_file(path, coco_gt)
    return UltralyticsDetector(path, imgsz=imgsz, conf=conf, device=device, warm_up=warm_up)


def _ultralytics_device(device: str | None) -> str | None:
    """Our device names ("cpu", "cuda", "cuda:1") in the spelling Ultralytics expects ("cpu", "0", "1")."""
    if device is None or device == "cpu":
        return device
    return device.split(":", 1)[1] if ":" in device else "0"
