"""The per-frame refinement step: detections in, refined detections out.

Split in two halves so cropping and the network call can run in different pipeline stages:
`prepare` chooses which detections to refine, cuts their windows out of the frame and builds the
mixture vectors; `finish` runs one batched backend call and decodes its answer. A detection is
refined only if its class maps to a refiner class, its box is usable (finite, inside the frame)
and at least `min_size` pixels wide and high; every other detection passes through untouched,
so one odd box never stops a stream.

Options users expect from a refiner, each measured in benchmarks/results: a policy that decides
how much of the refined box to take (replace, gate, blend), flip test-time augmentation (the
mirrored crop refined too, the two answers averaged) and iterations (refine the refined box).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal, Protocol

import numpy as np

from pipeline.backends.base import RefinerBackend
from pipeline.class_mapping import ClassMapping
from pipeline.crops import CpuCropper
from pipeline.detectors import Detections
from pipeline.geometry import crop_windows, decode, mixture_vectors, usable_boxes
from pipeline.sources import Frame
from pipeline.spec import RefinerSpec

Policy = Literal["replace", "gate", "blend"]
POLICIES: tuple[Policy, ...] = ("replace", "gate", "blend")
# Blend weight = sigmoid(predicted IoU gain / BLEND_TEMPERATURE): a predicted gain of +0.05 IoU
# takes 73% of the refined box, -0.05 takes 27%, and a tie takes the mean of the two boxes.
BLEND_TEMPERATURE = 0.05
CALIBRATION_PREFIX = "calibration."
NEGLIGIBLE_WEIGHT = 1e-6


@dataclass(frozen=True)
class Calibration:
    """How much to trust a refiner's predicted IoUs: fitted on training images with a real detector
    (`python -m benchmarks calibrate`) and stored in the model's spec, so it travels with the file.

    blend_temperature, gain_margin: the blend policy takes sigmoid((predicted gain - margin) / T)
    of the refined box; a margin asks for a clearer predicted gain before a box moves (a large one
    leaves every box alone), the gate takes the refined box where the gain beats the margin.
    score_power: output score = detector score x (predicted IoU of the output box) ** power. The
    IoU head judges how well a box fits an object, which the detector's class score does not
    (IoU-Net's localisation confidence); 0 leaves the detector's scores alone.
    """

    blend_temperature: float = BLEND_TEMPERATURE
    gain_margin: float = 0.0
    score_power: float = 0.0
    fitted_on: str = ""  # what it was fitted on, for the record

    def __post_init__(self) -> None:
        if not self.blend_temperature > 0 or not self.score_power >= 0:
            raise ValueError(f"calibration needs a positive blend temperature and a non-negative score power; got {self}")

    @classmethod
    def of(cls, spec: RefinerSpec) -> Calibration:
        """The spec's calibration; defaults where the model was never calibrated."""
        values = {key[len(CALIBRATION_PREFIX):]: value for key, value in spec.extra.items() if key.startswith(CALIBRATION_PREFIX)}
        return cls(float(values.get("blend_temperature", BLEND_TEMPERATURE)), float(values.get("gain_margin", 0.0)),
                   float(values.get("score_power", 0.0)), values.get("fitted_on", ""))

    def as_extra(self) -> dict[str, str]:
        return {f"{CALIBRATION_PREFIX}{name}": value if isinstance(value, str) else f"{value:g}" for name, value in self.__dict__.items()}


class RefineStatus(StrEnum):
    """Why an output box is what it is (written per object to detections.jsonl)."""

    REFINED = "refined"  # the refiner's box replaced the detector's
    GATED = "gated"  # refined, but the quality gate kept the detector's box
    UNMAPPED = "unmapped"  # the refiner does not know the detector's class
    UNUSABLE = "unusable"  # degenerate box (NaN, empty, outside the frame)
    SMALL = "small"  # below --min-size
    DISABLED = "disabled"  # --no-refine


def default_policy(spec: RefinerSpec) -> Policy:
    """Blend when the model predicts its own quality, otherwise trust every refined box.

    Blend, not gate or replace: on the committed person refiners it was the only policy that made
    neither precise set (sigma 0.05 jitter, mot17-mini's detections) worse, at about 1 AP less
    than replace on poor boxes (benchmarks/results/cpu-2core/).
    """
    return "blend" if spec.predicts_iou else "replace"


def refined_weight(outputs: np.ndarray, policy: Policy, calibration: Calibration = Calibration()) -> np.ndarray:
    """Per output, how much of the refined box to take: 0 keeps the input box, 1 takes the refined one.

    "replace": always 1 (the paper's behaviour). "gate": 1 only where the predicted IoU of the
    refined box (column 5) beats the predicted IoU of the input box (column 4), so the refiner
    cannot make a detection it believes to be worse. "blend": a soft gate, sigmoid of the predicted
    gain over the calibration's temperature, which averages the two boxes where the refiner is unsure.
    The calibration's margin is subtracted from the predicted gain first.
    """
    if policy == "replace":
        return np.ones(len(outputs))
    if policy not in POLICIES:
        raise ValueError(f"unknown refine policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if outputs.shape[1] < 6:
        raise ValueError(f"the {policy} policy needs a refiner that predicts IoU; use --policy replace")
    gain = outputs[:, 5].astype(np.float64) - outputs[:, 4] - calibration.gain_margin
    if policy == "gate":
        return (gain > 0).astype(np.float64)
    weight = 1.0 / (1.0 + np.exp(-gain / calibration.blend_temperature))
    return np.where(weight < NEGLIGIBLE_WEIGHT, 0.0, weight)  # a move below a millionth of the way is no move: status "gated"


def accept_refined(outputs: np.ndarray, policy: Policy) -> np.ndarray:
    """Mask of outputs that change the input box at all (weight above zero)."""
    return refined_weight(outputs, policy) > 0


def mirror_outputs(outputs: np.ndarray) -> np.ndarray:
    """Outputs of a horizontally mirrored crop, mapped back to the unmirrored window."""
    unmirrored = outputs.copy()
    unmirrored[:, 0], unmirrored[:, 2] = 1 - outputs[:, 2], 1 - outputs[:, 0]
    return unmirrored


def mirror_inputs(crops: object, vectors: np.ndarray, num_classes: int) -> tuple[object, np.ndarray]:
    """Crops flipped left-right (host array or torch tensor) and vectors with the centre x mirrored."""
    if isinstance(crops, np.ndarray):
        mirrored = np.ascontiguousarray(crops[:, :, ::-1])
    else:
        mirrored = crops.flip(2)
    vectors = vectors.copy()
    vectors[:, num_classes] = 1 - vectors[:, num_classes]
    return mirrored, vectors


def concatenate_all(parts: Sequence[object]) -> object:
    """Join crop batches along the batch axis: host arrays or torch tensors."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch

    return torch.cat(list(parts))


def rescored(scores: np.ndarray, outputs: np.ndarray, weights: np.ndarray, power: float) -> np.ndarray:
    """Scores x (predicted IoU of the output box) ** power; the output box's IoU is the two
    predictions (columns 4, 5) mixed as the boxes were, by `weights`."""
    if power == 0:
        return scores
    fit = np.clip(outputs[:, 4] + weights * (outputs[:, 5] - outputs[:, 4]), 1e-6, 1.0)
    return scores * fit**power


def _copy(crops: object) -> object:
    return crops.copy() if isinstance(crops, np.ndarray) else crops.clone()


@dataclass(frozen=True)
class RefinedDetections:
    """Detections plus, per object, the refined box (NaN row where not used), status, predicted IoUs
    and the output score (the detector's, unless the refiner's calibration rescores by predicted IoU)."""

    detections: Detections
    refined_boxes: np.ndarray  # (N, 4) float64 frame pixels; NaN where the detector's box stands
    status: tuple[RefineStatus, ...]
    predicted_iou: np.ndarray  # (N, 2) IoU of input box, of refined box; NaN where not predicted
    scores: np.ndarray | None = None  # (N,) output scores; None: the detector's

    def __post_init__(self) -> None:
        count = len(self.detections)
        if self.refined_boxes.shape != (count, 4) or self.predicted_iou.shape != (count, 2) or len(self.status) != count:
            raise ValueError(f"refinement results must have one row per detection ({count})")
        if self.scores is None:
            object.__setattr__(self, "scores", self.detections.scores)
        elif self.scores.shape != (count,):
            raise ValueError(f"refinement results must have one score per detection ({count})")

    @classmethod
    def untouched(cls, detections: Detections, status: RefineStatus) -> RefinedDetections:
        count = len(detections)
        return cls(detections, np.full((count, 4), np.nan), (status,) * count, np.full((count, 2), np.nan))

    @property
    def changed(self) -> np.ndarray:
        """Mask of objects whose box the refiner changed."""
        return ~np.isnan(self.refined_boxes).any(axis=1)

    @property
    def final_boxes(self) -> np.ndarray:
        """The box to use for each object: refined where refined, else the detector's."""
        return np.where(self.changed[:, None], self.refined_boxes, self.detections.boxes)


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

    frame: Frame  # kept for iterations, which crop again around the refined boxes
    detections: Detections
    frame_size: tuple[int, int]  # width, height
    status: tuple[RefineStatus, ...]  # final for unselected objects
    selected: np.ndarray  # indices of the detections being refined
    windows: np.ndarray  # (M, 4) int64
    crops: object  # (M, S, S, 3) uint8, host array or device tensor
    vectors: np.ndarray  # (M, spec.vector_size) float32


@dataclass(frozen=True)
class BatchJob:
    """The jobs of several frames (one cycle of many streams), their crops and vectors joined for one backend call."""

    jobs: tuple[RefineJob, ...]
    crops: object  # (sum M, S, S, 3) uint8, host array or device tensor
    vectors: np.ndarray  # (sum M, spec.vector_size) float32


class FrameRefiner:
    """Refines the detections of one frame with one batched backend call per pass (flip TTA rides in it)."""

    def __init__(
        self,
        backend: RefinerBackend,
        mapping: ClassMapping,
        cropper: Cropper,
        min_size: float = 0.0,
        policy: Policy | None = None,
        flip_tta: bool = False,
        iterations: int = 1,
    ) -> None:
        self.spec = backend.spec
        self.policy = policy or default_policy(self.spec)
        self.calibration = Calibration.of(self.spec)
        refined_weight(np.zeros((0, self.spec.output_size)), self.policy)  # fail now on a bad policy, not mid-stream
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1; got {iterations}")
        if mapping.refiner_names != self.spec.class_names:
            raise ValueError("the class mapping was built for another refiner's classes")
        if min_size < 0:
            raise ValueError(f"min size must be non-negative; got {min_size}")
        self.backend = backend
        self.mapping = mapping
        self.cropper = cropper
        self.min_size = min_size
        self.flip_tta = flip_tta
        self.iterations = iterations
        # Later iterations crop in the refine stage, while the crop stage keeps using `cropper`
        # (a ring of buffers owned by that stage): they get their own single-thread CPU cropper.
        self._iteration_cropper = CpuCropper(self.spec.input_size) if iterations > 1 else None
        self.backend_calls = 0  # backend.refine calls with at least one crop, and the crops they carried
        self.crops_refined = 0

    def __call__(self, frame: Frame, detections: Detections) -> RefinedDetections:
        return self.finish(self.prepare(frame, detections))

    def prepare(
        self, frame: Frame, detections: Detections, only: np.ndarray | None = None, cropper: Cropper | None = None
    ) -> RefineJob:
        """Choose, window and crop the detections to refine (`only`: a mask further limiting them)."""
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
        selected = np.flatnonzero(mapped & usable & large & (True if only is None else only))
        windows = crop_windows(boxes[selected], self.spec.padding)
        vectors = mixture_vectors(refiner_ids[selected], boxes[selected], windows, self.spec.num_classes)
        crops = (cropper or self.cropper).crop(frame.image, windows)
        return RefineJob(frame, detections, (width, height), tuple(RefineStatus(s) for s in status), selected, windows, crops, vectors)

    def prepare_many(self, pairs: Sequence[tuple[Frame, Detections]]) -> BatchJob:
        """Prepare several frames (many streams) so that `finish_many` refines them in ONE backend call.

        Each frame's crops are copied out at once: a ring cropper reuses its buffers after a few
        frames, fewer than a cycle of many streams may hold.
        """
        jobs = tuple(replace(job, crops=_copy(job.crops)) for job in (self.prepare(*pair) for pair in pairs))
        if not jobs:
            raise ValueError("prepare_many needs at least one frame")
        crops = jobs[0].crops if len(jobs) == 1 else concatenate_all([job.crops for job in jobs])
        return BatchJob(jobs, crops, np.concatenate([job.vectors for job in jobs]))

    def finish_many(self, batch: BatchJob) -> list[RefinedDetections]:
        """One backend call over every frame's crops, its outputs split back per frame (then iterations per frame)."""
        outputs = self._infer(batch.crops, batch.vectors)
        bounds = np.cumsum([len(job.vectors) for job in batch.jobs])[:-1]
        parts = np.split(outputs, bounds)
        return [self._iterate(job, self._refine_once(job, part)) for job, part in zip(batch.jobs, parts, strict=True)]

    def finish(self, job: RefineJob) -> RefinedDetections:
        """Refine the prepared crops; with iterations > 1, crop again around each changed box and repeat."""
        return self._iterate(job, self._refine_once(job))

    def _iterate(self, job: RefineJob, result: RefinedDetections) -> RefinedDetections:
        """Passes after the first (iterations > 1): crop again around each changed box and refine it again."""
        changed = result.changed
        for _ in range(self.iterations - 1):
            if not changed.any():
                break
            moved = Detections(result.final_boxes, job.detections.scores, job.detections.class_ids, job.detections.class_names)
            again = self._refine_once(self.prepare(job.frame, moved, only=changed, cropper=self._iteration_cropper))
            changed = again.changed
            result = merge_iteration(result, again)
        return result

    def _refine_once(self, job: RefineJob, outputs: np.ndarray | None = None) -> RefinedDetections:
        """`outputs`: this job's rows of a call already made for many frames (finish_many)."""
        count = len(job.detections)
        outputs = self._infer(job.crops, job.vectors) if outputs is None else outputs
        weights = refined_weight(outputs, self.policy, self.calibration)
        accepted = weights > 0
        width, height = job.frame_size
        # A refined box is an object in this frame; the window may reach past the frame edge.
        boxes = np.clip(decode(outputs[:, :4], job.windows), 0, [width, height, width, height])
        inputs = job.detections.boxes[job.selected].astype(np.float64)
        boxes = inputs + weights[:, None] * (boxes - inputs)
        refined_boxes = np.full((count, 4), np.nan)
        refined_boxes[job.selected[accepted]] = boxes[accepted]
        predicted_iou = np.full((count, 2), np.nan)
        scores = job.detections.scores
        if self.spec.predicts_iou:
            predicted_iou[job.selected] = outputs[:, 4:6]
            if self.calibration.score_power > 0:
                scores = scores.copy()
                scores[job.selected] = rescored(scores[job.selected], outputs, weights, self.calibration.score_power)
        status = list(job.status)
        for index, ok in zip(job.selected, accepted, strict=True):
            status[index] = RefineStatus.REFINED if ok else RefineStatus.GATED
        return RefinedDetections(job.detections, refined_boxes, tuple(status), predicted_iou, scores)

    def _infer(self, crops: object, vectors: np.ndarray) -> np.ndarray:
        """One batched backend call; with flip TTA the mirrored crops ride in the same batch."""
        crops = self._backend_input(crops)
        if len(vectors):
            self.backend_calls += 1
            self.crops_refined += len(vectors)
        if not self.flip_tta or len(vectors) == 0:
            return self.backend.refine(crops, vectors)
        mirrored_crops, mirrored_vectors = mirror_inputs(crops, vectors, self.spec.num_classes)
        outputs = self.backend.refine(concatenate_all([crops, mirrored_crops]), np.concatenate([vectors, mirrored_vectors]))
        count = len(vectors)
        return (outputs[:count] + mirror_outputs(outputs[count:])) / 2

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


def merge_iteration(previous: RefinedDetections, again: RefinedDetections) -> RefinedDetections:
    """Fold a later iteration into the result: where it refined a box, its box and predictions win."""
    refined = again.changed[:, None]
    boxes = np.where(refined, again.refined_boxes, previous.refined_boxes)
    predicted = np.where(refined, again.predicted_iou, previous.predicted_iou)
    scores = np.where(again.changed, again.scores, previous.scores)
    # The detections of a later iteration are the moved boxes; report against the original ones.
    return RefinedDetections(previous.detections, boxes, previous.status, predicted, scores)
