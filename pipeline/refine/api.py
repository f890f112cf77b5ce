"""The public Python API: `Refiner` refines boxes of one image from a user's own code.

It is built by the same `build_frame_refiner` the video app and every benchmark use, so the API
and the app cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import UsageError
from pipeline.core.types import Detections, Frame, RefinedDetections
from pipeline.model.defaults import default_refiner, resolve_device
from pipeline.refine.class_mapping import canonical_name
from pipeline.refine.policy import Policy
from pipeline.refine.refiner import OTHER_CLASS, build_frame_refiner
from pipeline.track.stream import StreamTracks, TrackOptions


class Refiner:
    """Refine detector boxes with a refiner model file (.safetensors, .onnx or .engine).

    `path` None: the committed person refiner. `backend` "auto" picks TensorRT on a GPU, the faster of
    OpenVINO and ONNX Runtime on a CPU, else torch; `device` None: CUDA when available; `precision`
    "fp32" keeps OpenVINO at full precision (None: BF16 where the CPU has it). Not thread-safe: use
    one Refiner per thread.
    `track`: the images are one video's frames, in order: each result carries track ids (ByteTrack
    on the output boxes) and, as the TrackOptions say, boxes smoothed along tracks and refinements
    reused where a box held still (True: ids only). Use one Refiner per video stream. `profile`: the
    calibration profile of the detector whose boxes you pass ("yolov8n", ...; None: "generic");
    `max_refine`: at most this many boxes per call are refined, those with the highest expected gain.
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
        precision: str | None = None,
        track: TrackOptions | bool = False,
        profile: str | None = None,
        max_refine: int | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else default_refiner()
        self.device = resolve_device(device)
        self._frame_refiner = build_frame_refiner(
            self.path, None, backend=backend, device=self.device, max_batch=max_batch,
            min_size=min_size, policy=policy, flip_tta=flip_tta, iterations=iterations, precision=precision,
            profile=profile, max_refine=max_refine,
        )
        self.spec = self._frame_refiner.spec
        self._index = {canonical_name(name): index for index, name in enumerate(self.spec.class_names)}
        self._tracks = None if track is False else StreamTracks(TrackOptions() if track is True else track)
        self._frames = 0

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
        boxes: Detections | np.ndarray | Sequence[Sequence[float]],
        class_names: str | Sequence[str] | None = None,
        scores: Sequence[float] | np.ndarray | None = None,
    ) -> RefinedDetections:
        """Refine the boxes of one BGR image; the result keeps their order (`.boxes`, `.status`, `.predicted_iou`).

        `boxes`: a Detections (boxes, scores, class ids and the detector's class names, e.g.
        Detections.from_ultralytics(results[0])), or N xyxy pixel boxes with `class_names`, one name
        per box or one for all, and optional `scores`. Integer class ids need their names: pass a Detections.
        With `track`, `.tracks` holds each box's track id (`.track_ids`) and its box along the track
        (smoothed where the TrackOptions smooth).
        """
        if isinstance(boxes, Detections):
            if class_names is not None or scores is not None:
                raise UsageError("a Detections carries its class names and scores; pass it alone")
            detections = boxes
        else:
            detections = _named_detections(boxes, class_names, scores)
        frame = Frame(self._frames, np.ascontiguousarray(frame_bgr), None, "image")
        self._frames += 1
        in_refiner_classes = self._in_refiner_classes(detections)
        if self._tracks is None:
            return replace(self._frame_refiner(frame, in_refiner_classes), detections=detections)  # the caller's classes
        refined, tracks = self._tracks.refine(self._frame_refiner, frame, in_refiner_classes)
        return replace(refined, detections=detections, tracks=tracks)

    def _in_refiner_classes(self, detections: Detections) -> Detections:
        """The same detections with class ids into the refiner's classes (OTHER_CLASS for the rest), by name."""
        other = len(self.spec.class_names)
        ids = [self._index.get(canonical_name(name), other) for name in detections.names]
        return Detections(detections.boxes, detections.scores, ids, (*self.spec.class_names, OTHER_CLASS))

    def refine_ultralytics(self, results: Any) -> Any:
        """Ultralytics Results (one or a list, as `model(image)` returns) with refined boxes; same type back."""
        if isinstance(results, list | tuple):
            return [self._refine_one_ultralytics(result) for result in results]
        return self._refine_one_ultralytics(results)

    def _refine_one_ultralytics(self, result: Any) -> Any:
        refined = self.refine(result.orig_img, Detections.from_ultralytics(result))
        data = result.boxes.data.clone()
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


def _named_detections(
    boxes: np.ndarray | Sequence[Sequence[float]], class_names: str | Sequence[str] | None, scores: Sequence[float] | np.ndarray | None
) -> Detections:
    """Boxes with one class name each (or one for all) as Detections over the names given, in their first order."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if class_names is None:
        raise UsageError("give class_names (one name per box, or one for all), or pass a Detections with the detector's names")
    names = [class_names] * len(boxes) if isinstance(class_names, str) else list(class_names)
    wrong = next((name for name in names if not isinstance(name, str)), None)
    if wrong is not None:
        raise UsageError(
            f"class_names must be names, got {wrong!r}; for class ids pass Detections(boxes, scores, class_ids, "
            "detector_class_names) or Detections.from_ultralytics(results[0])"
        )
    if len(names) != len(boxes):
        raise UsageError(f"got {len(boxes)} boxes but {len(names)} class names; give one name per box")
    known = tuple(dict.fromkeys(names)) or (OTHER_CLASS,)  # Detections needs a class list, even for no boxes
    ids = [known.index(name) for name in names]
    return Detections(boxes, np.ones(len(boxes)) if scores is None else scores, ids, known)
