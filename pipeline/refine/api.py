"""The public Python API: `Refiner` refines boxes of one image from a user's own code.

It is built by the same `build_frame_refiner` the video app and every benchmark use, so the API
and the app cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import UsageError
from pipeline.core.types import Detections, Frame, RefinedDetections, RefineStatus
from pipeline.model.defaults import default_refiner, resolve_device
from pipeline.refine.class_mapping import canonical_name
from pipeline.refine.policy import Policy
from pipeline.refine.refiner import OTHER_CLASS, build_frame_refiner


@dataclass(frozen=True)
class RefineResult:
    """Refined boxes of one image, in the order they were given.

    boxes: (N, 4) float64 xyxy, the box to use (refined where refined, else the input box);
    status: per box, why it is what it is ("refined", "gated", "unmapped", "unusable", "small",
    "skipped_gain", "skipped_budget");
    predicted_iou: (N, 2) predicted IoU of the input box and of the refined box with the object
    (NaN for boxes not refined), or None when the model does not predict IoU.
    """

    boxes: np.ndarray
    status: tuple[RefineStatus, ...]
    predicted_iou: np.ndarray | None
    input_boxes: np.ndarray

    @property
    def refined(self) -> np.ndarray:
        """Mask of boxes the refiner changed."""
        return np.array([status == RefineStatus.REFINED for status in self.status], dtype=bool)

    def __len__(self) -> int:
        return len(self.boxes)


class Refiner:
    """Refine detector boxes with a refiner model file (.safetensors, .onnx or .engine).

    `path` None: the committed person refiner. `backend` "auto" picks TensorRT, ONNX Runtime or
    torch; `device` None: CUDA when available. `profile`: the calibration profile of the detector
    whose boxes you pass ("yolov8n", ...; None: "generic"); `max_refine`: at most this many boxes
    per call are refined, those with the highest expected gain. Not thread-safe: use one Refiner per thread.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        backend: str = "auto",
        device: str | None = None,
        *,
        policy: Policy | None = None,
        min_size: float = 0.0,
        flip_tta: bool = False,
        iterations: int = 1,
        max_batch: int = 32,
        profile: str | None = None,
        max_refine: int | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else default_refiner()
        self.device = resolve_device(device)
        self._frame_refiner = build_frame_refiner(
            self.path, None, backend=backend, device=self.device, max_batch=max_batch,
            min_size=min_size, policy=policy, flip_tta=flip_tta, iterations=iterations, profile=profile, max_refine=max_refine,
        )
        self.spec = self._frame_refiner.spec
        self._index = {canonical_name(name): index for index, name in enumerate(self.spec.class_names)}

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes this refiner knows; other classes pass through unrefined."""
        return self.spec.class_names

    @property
    def backend(self) -> str:
        return self._frame_refiner.backend.name

    def refine(
        self,
        frame_bgr: np.ndarray,
        boxes_xyxy: np.ndarray | Sequence[Sequence[float]],
        class_names: str | Sequence[str],
        scores: Sequence[float] | np.ndarray | None = None,
    ) -> RefineResult:
        """Refine N boxes (xyxy pixels) of one BGR image; `class_names` is one name per box, or one for all."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        names = [class_names] * len(boxes) if isinstance(class_names, str) else list(class_names)
        if len(names) != len(boxes):
            raise UsageError(f"got {len(boxes)} boxes but {len(names)} class names; give one name per box")
        other = len(self.spec.class_names)
        ids = np.array([self._index.get(canonical_name(str(name)), other) for name in names], dtype=np.int64)
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64)
        detections = Detections(boxes, scores, ids, (*self.spec.class_names, OTHER_CLASS))
        image = np.ascontiguousarray(frame_bgr)
        refined = self._frame_refiner(Frame(0, image, None, "image"), detections)
        return _result(refined, boxes, self.spec.predicts_iou)

    def refine_ultralytics(self, results: Any) -> Any:
        """Ultralytics Results (one or a list, as `model(image)` returns) with refined boxes; same type back."""
        if isinstance(results, list | tuple):
            return [self._refine_one_ultralytics(result) for result in results]
        return self._refine_one_ultralytics(results)

    def _refine_one_ultralytics(self, result: Any) -> Any:
        if result.boxes is None:
            raise UsageError("refine_ultralytics needs detection Results (with .boxes)")
        data = result.boxes.data.clone()
        names = [result.names[int(class_id)] for class_id in result.boxes.cls.tolist()]
        refined = self.refine(result.orig_img, result.boxes.xyxy.cpu().numpy(), names, result.boxes.conf.cpu().numpy())
        data[:, :4] = data.new_tensor(refined.boxes)
        out = result.new()
        out.update(boxes=data)
        return out

    def refine_supervision(self, frame_bgr: np.ndarray, detections: Any) -> Any:
        """A copy of a `supervision.Detections` with refined xyxy, plus data["refine_status"] and data["predicted_iou"]."""
        from pipeline.refine.supervision_adapter import from_supervision, to_supervision

        boxes, names, scores = from_supervision(detections)
        return to_supervision(detections, self.refine(frame_bgr, boxes, names, scores))

    def close(self) -> None:
        self._frame_refiner.cropper.close()
        self._frame_refiner.backend.close()

    def __enter__(self) -> Refiner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _result(refined: RefinedDetections, input_boxes: np.ndarray, predicts_iou: bool) -> RefineResult:
    # Unchanged boxes come back exactly as given (the caller's values, before Detections made them float64).
    return RefineResult(
        boxes=np.where(refined.changed[:, None], refined.refined_boxes, input_boxes),
        status=refined.status,
        predicted_iou=refined.predicted_iou if predicts_iou else None,
        input_boxes=input_boxes,
    )
