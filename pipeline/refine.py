"""The per-frame refinement step: detections in, refined detections out.

Split in two halves so cropping and the network call can run in different pipeline stages:
`prepare` chooses which detections to refine, cuts their windows out of the frame and builds the
mixture vectors; `finish` runs one batched backend call and decodes its answer. A detection is
refined only if its class maps to a refiner class, its box is usable (finite, inside the frame)
and at least `min_size` pixels wide and high; every other detection passes through untouched,
so one odd box never stops a stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

import numpy as np

from pipeline.backends.base import RefinerBackend
from pipeline.class_mapping import ClassMapping
from pipeline.detectors import Detections
from pipeline.geometry import crop_windows, decode, mixture_vectors, usable_boxes
from pipeline.sources import Frame
from pipeline.spec import RefinerSpec

Policy = Literal["replace", "gate"]
POLICIES: tuple[Policy, ...] = ("replace", "gate")


class RefineStatus(StrEnum):
    """Why an output box is what it is (written per object to detections.jsonl)."""

    REFINED = "refined"  # the refiner's box replaced the detector's
    GATED = "gated"  # refined, but the quality gate kept the detector's box
    UNMAPPED = "unmapped"  # the refiner does not know the detector's class
    UNUSABLE = "unusable"  # degenerate box (NaN, empty, outside the frame)
    SMALL = "small"  # below --min-size
    DISABLED = "disabled"  # --no-refine


def default_policy(spec: RefinerSpec) -> Policy:
    """Gate when the model predicts its own quality, otherwise trust every refined box."""
    return "gate" if spec.predicts_iou else "replace"


def accept_refined(outputs: np.ndarray, policy: Policy) -> np.ndarray:
    """Mask of refiner outputs whose box should replace the input box.

    "replace": always (the paper's behaviour). "gate": only where the predicted IoU of the refined
    box (column 5) beats the predicted IoU of the input box (column 4), so the refiner cannot make
    a detection it believes to be worse. Both are kept so their effect can be measured.
    """
    if policy == "replace":
        return np.ones(len(outputs), dtype=bool)
    if policy == "gate":
        if outputs.shape[1] < 6:
            raise ValueError("the gate policy needs a refiner that predicts IoU; use --policy replace")
        return outputs[:, 5] > outputs[:, 4]
    raise ValueError(f"unknown refine policy {policy!r}; choose one of {', '.join(POLICIES)}")


@dataclass(frozen=True)
class RefinedDetections:
    """Detections plus, per object, the refined box (NaN row where not used), status and predicted IoUs."""

    detections: Detections
    refined_boxes: np.ndarray  # (N, 4) float64 frame pixels; NaN where the detector's box stands
    status: tuple[RefineStatus, ...]
    predicted_iou: np.ndarray  # (N, 2) IoU of input box, of refined box; NaN where not predicted

    def __post_init__(self) -> None:
        count = len(self.detections)
        if self.refined_boxes.shape != (count, 4) or self.predicted_iou.shape != (count, 2) or len(self.status) != count:
            raise ValueError(f"refinement results must have one row per detection ({count})")

    @classmethod
    def untouched(cls, detections: Detections, status: RefineStatus) -> RefinedDetections:
        count = len(detections)
        return cls(detections, np.full((count, 4), np.nan), (status,) * count, np.full((count, 2), np.nan))

    @property
    def final_boxes(self) -> np.ndarray:
        """The box to use for each object: refined where refined, else the detector's."""
        refined = ~np.isnan(self.refined_boxes).any(axis=1)
        return np.where(refined[:, None], self.refined_boxes, self.detections.boxes)


@dataclass(frozen=True)
class FrameResult:
    """A frame and its refined detections: what every sink consumes."""

    frame: Frame
    objects: RefinedDetections


class Cropper(Protocol):
    """CropperRing (host arrays) or GpuCropper (device tensors): windows of a frame -> uint8 NHWC batch."""

    def crop(self, frame: np.ndarray, windows: np.ndarray) -> object: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RefineJob:
    """Everything `finish` needs: crops and vectors of the selected detections, and the rest."""

    detections: Detections
    frame_size: tuple[int, int]  # width, height
    status: tuple[RefineStatus, ...]  # final for unselected objects
    selected: np.ndarray  # indices of the detections being refined
    windows: np.ndarray  # (M, 4) int64
    crops: object  # (M, S, S, 3) uint8, host array or device tensor
    vectors: np.ndarray  # (M, spec.vector_size) float32


class FrameRefiner:
    """Refines the detections of one frame with one batched backend call."""

    def __init__(
        self,
        backend: RefinerBackend,
        mapping: ClassMapping,
        cropper: Cropper,
        min_size: float = 0.0,
        policy: Policy | None = None,
    ) -> None:
        self.spec = backend.spec
        self.policy = policy or default_policy(self.spec)
        accept_refined(np.zeros((0, self.spec.output_size)), self.policy)  # fail now on a bad policy, not mid-stream
        if mapping.refiner_names != self.spec.class_names:
            raise ValueError("the class mapping was built for another refiner's classes")
        if min_size < 0:
            raise ValueError(f"min size must be non-negative; got {min_size}")
        self.backend = backend
        self.mapping = mapping
        self.cropper = cropper
        self.min_size = min_size

    def __call__(self, frame: Frame, detections: Detections) -> RefinedDetections:
        return self.finish(self.prepare(frame, detections))

    def prepare(self, frame: Frame, detections: Detections) -> RefineJob:
        height, width = frame.image.shape[:2]
        boxes = detections.boxes.astype(np.float64)
        refiner_ids = self.mapping.to_refiner(detections.class_ids)
        mapped = refiner_ids >= 0
        usable = usable_boxes(boxes, width, height)
        with np.errstate(invalid="ignore"):
            large = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.min_size
        status = np.select(
            [~mapped, ~usable, ~large],
            [RefineStatus.UNMAPPED, RefineStatus.UNUSABLE, RefineStatus.SMALL],
            RefineStatus.REFINED,
        )
        selected = np.flatnonzero(mapped & usable & large)
        windows = crop_windows(boxes[selected], self.spec.padding)
        vectors = mixture_vectors(refiner_ids[selected], boxes[selected], windows, self.spec.num_classes)
        crops = self.cropper.crop(frame.image, windows)
        return RefineJob(detections, (width, height), tuple(RefineStatus(s) for s in status), selected, windows, crops, vectors)

    def finish(self, job: RefineJob) -> RefinedDetections:
        count = len(job.detections)
        outputs = self.backend.refine(self._backend_input(job.crops), job.vectors)
        accepted = accept_refined(outputs, self.policy)
        width, height = job.frame_size
        # A refined box is an object in this frame; the window may reach past the frame edge.
        boxes = np.clip(decode(outputs[:, :4], job.windows), 0, [width, height, width, height])
        refined_boxes = np.full((count, 4), np.nan)
        refined_boxes[job.selected[accepted]] = boxes[accepted]
        predicted_iou = np.full((count, 2), np.nan)
        if self.spec.predicts_iou:
            predicted_iou[job.selected] = outputs[:, 4:6]
        status = list(job.status)
        for index, ok in zip(job.selected, accepted, strict=True):
            status[index] = RefineStatus.REFINED if ok else RefineStatus.GATED
        return RefinedDetections(job.detections, refined_boxes, tuple(status), predicted_iou)

    def _backend_input(self, crops: object) -> object:
        """Host arrays go as they are; a device tensor from the GPU cropper goes straight to a backend
        that computes on that device (torch, TensorRT), and is copied to the host for any other."""
        if isinstance(crops, np.ndarray) or (takes_device_tensors(self.backend) and self.backend.device == crops.device):
            return crops
        return crops.cpu().numpy()


def takes_device_tensors(backend: RefinerBackend) -> bool:
    """True for backends that compute on torch tensors and accept crops already on their device."""
    from pipeline.backends.torch import TensorInputBackend  # lazy: only GPU-crop decisions need torch

    return isinstance(backend, TensorInputBackend)
