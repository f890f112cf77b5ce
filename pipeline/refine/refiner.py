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
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.backends import open_backend
from pipeline.backends.base import RefinerBackend
from pipeline.core.calibration import GENERIC_PROFILE
from pipeline.core.errors import UsageError
from pipeline.core.geometry import crop_windows, decode, longer_sides, mixture_vectors, usable_boxes
from pipeline.core.types import Detections, Frame, RefinedDetections, RefineStatus
from pipeline.model.artifacts import ModelFile
from pipeline.refine.class_mapping import ClassMapping
from pipeline.refine.crops import CpuCropper
from pipeline.refine.gate import box_gain_inputs, expected_gain, gate_decision
from pipeline.refine.policy import Policy, check_policy, choose_profile, default_policy, refined_weight, rescored

# Stands for every class the refiner does not know; such boxes pass through with status "unmapped".
OTHER_CLASS = "\x00other"


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


def _copy(crops: object) -> object:
    return crops.copy() if isinstance(crops, np.ndarray) else crops.clone()


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
    """Refines the detections of one frame with one batched backend call per pass (flip TTA rides in it).

    Put together by `build_frame_refiner`, for the app, the public Refiner and every benchmark alike.
    """

    def __init__(
        self,
        backend: RefinerBackend,
        mapping: ClassMapping,
        cropper: Cropper,
        min_size: float = 0.0,
        policy: Policy | None = None,
        flip_tta: bool = False,
        iterations: int = 1,
        profile: str | None = None,
        detector_profile: str = GENERIC_PROFILE,
        max_refine: int | None = None,
        gate: bool = True,
    ) -> None:
        self.spec = backend.spec
        self.policy = check_policy(policy or default_policy(self.spec), self.spec)  # now, not mid-stream
        # The detector's calibration profile (or --profile's): the policy's constants and the gate.
        self.profile, self.calibration = choose_profile(self.spec, detector_profile, profile)
        if iterations < 1:
            raise UsageError(f"iterations must be at least 1; got {iterations}")
        if max_refine is not None and max_refine < 0:
            raise UsageError(f"--max-refine must be non-negative; got {max_refine}")
        if mapping.refiner_names != self.spec.class_names:
            raise ValueError("the class mapping was built for another refiner's classes")
        if min_size < 0:
            raise UsageError(f"min size must be non-negative; got {min_size}")
        self.backend = backend
        self.mapping = mapping
        self.cropper = cropper
        self.min_size = min_size
        self.flip_tta = flip_tta
        self.iterations = iterations
        self.max_refine = max_refine
        # The gate skips boxes for blend and gate, which it was fitted for; replace (the paper's
        # policy) refines every box, and calibration itself (gate=False) must see every box's gain.
        self.gate = self.calibration.gate if gate else None
        self.gate_threshold = -np.inf if self.gate is None or self.policy == "replace" else self.gate.threshold
        # Later iterations crop in the refine stage, while the crop stage keeps using `cropper`
        # (a ring of buffers owned by that stage): they get their own single-thread CPU cropper.
        self._iteration_cropper = CpuCropper(self.spec.input_size) if iterations > 1 else None
        self.backend_calls = 0  # backend.refine calls with at least one crop, and the crops they carried
        self.crops_refined = 0

    def __call__(self, frame: Frame, detections: Detections) -> RefinedDetections:
        return self.finish(self.prepare(frame, detections))

    def prepare(
        self, frame: Frame, detections: Detections, only: np.ndarray | None = None, cropper: Cropper | None = None,
        gated: bool = True,
    ) -> RefineJob:
        """Choose, window and crop the detections to refine.

        `only`: a mask further limiting them (reuse along tracks, later iterations); `gated`: the
        profile's gate and the per-frame budget skip boxes before they are cropped (False: later
        iterations, whose boxes were chosen already).
        """
        height, width = frame.image.shape[:2]
        boxes = detections.boxes
        refiner_ids = self.mapping.to_refiner(detections.class_ids)
        mapped = refiner_ids >= 0
        usable = usable_boxes(boxes, width, height)
        with np.errstate(invalid="ignore"):
            large = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.min_size
        candidates = mapped & usable & large
        wanted = candidates if only is None else candidates & only
        skipped_gain, skipped_budget = np.zeros_like(candidates), np.zeros_like(candidates)
        if gated:
            skipped_gain[wanted], skipped_budget[wanted] = self._skipped(detections, refiner_ids, wanted, (width, height))
        status = np.select(
            [~mapped, ~usable, ~large, skipped_gain, skipped_budget],
            [RefineStatus.UNMAPPED, RefineStatus.UNUSABLE, RefineStatus.SMALL, RefineStatus.SKIPPED_GAIN, RefineStatus.SKIPPED_BUDGET],
            RefineStatus.REFINED,
        )
        selected = np.flatnonzero(wanted & ~skipped_gain & ~skipped_budget)
        windows = crop_windows(boxes[selected], self.spec.padding)
        vectors = mixture_vectors(refiner_ids[selected], boxes[selected], windows, self.spec.num_classes)
        crops = (cropper or self.cropper).crop(frame.image, windows)
        return RefineJob(frame, detections, (width, height), tuple(RefineStatus(s) for s in status), selected, windows, crops, vectors)

    def _skipped(self, detections: Detections, refiner_ids: np.ndarray, candidates: np.ndarray,
                 frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Over the candidate boxes: skipped before the network as not worth it, skipped by the budget.

        Not worth it: the gate expects no gain, or (blend, gate) the box is above the profile's
        max_box_side, which those policies never move. Without a gate every box is expected to pay
        alike, so the budget keeps the detector's first boxes (Ultralytics: best score first).
        """
        sides, features = box_gain_inputs(detections.boxes[candidates], detections.scores[candidates], frame_size)
        if self.gate is None:
            expected = np.zeros(len(sides))
        else:
            expected = expected_gain(self.gate, sides, features, [self.spec.class_names[i] for i in refiner_ids[candidates]])
        if self.policy != "replace":
            expected = np.where(sides > self.calibration.max_box_side, -np.inf, expected)
        return gate_decision(expected, self.gate_threshold, self.max_refine)

    def prepare_many(self, pairs: Sequence[tuple[Frame, Detections] | tuple[Frame, Detections, np.ndarray | None]]) -> BatchJob:
        """Prepare several frames (many streams) so that `finish_many` refines them in ONE backend call
        (a third item per frame: `prepare`'s `only` mask).

        With several frames, each frame's crops are copied out as soon as they are made: a ring
        cropper reuses its buffers after a few frames, fewer than a cycle of many streams may hold.
        One frame (a run of one stream) keeps its ring buffer, as `prepare` does.
        """
        if not pairs:
            raise ValueError("prepare_many needs at least one frame")
        if len(pairs) == 1:
            jobs: tuple[RefineJob, ...] = (self.prepare(*pairs[0]),)
        else:
            jobs = tuple(replace(job, crops=_copy(job.crops)) for job in (self.prepare(*pair) for pair in pairs))
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
            moved = Detections(result.boxes, job.detections.scores, job.detections.class_ids, job.detections.class_names)
            again = self._refine_once(self.prepare(job.frame, moved, only=changed, cropper=self._iteration_cropper, gated=False))
            changed = again.changed
            result = merge_iteration(result, again)
        return result

    def _refine_once(self, job: RefineJob, outputs: np.ndarray | None = None) -> RefinedDetections:
        """`outputs`: this job's rows of a call already made for many frames (finish_many)."""
        return self.decode_outputs(job, self._infer(job.crops, job.vectors) if outputs is None else outputs)

    def decode_outputs(self, job: RefineJob, outputs: np.ndarray) -> RefinedDetections:
        """A job's backend outputs as refined detections: the policy's weights (with the calibration),
        windows back to frame pixels, the blend towards the input box, rescored scores.

        Public so that the latency benchmark times exactly the decode that ships.
        """
        count = len(job.detections)
        inputs = job.detections.boxes[job.selected]
        # A non-finite output (damaged weights, an FP16 overflow) is not a gate decision: it gets its own status.
        valid = np.isfinite(outputs).all(axis=1)
        outputs = np.where(valid[:, None], outputs, 0.0)
        weights = np.where(valid, refined_weight(outputs, self.policy, self.calibration, longer_sides(inputs)), 0.0)
        accepted = weights > 0
        width, height = job.frame_size
        # A refined box is an object in this frame; the window may reach past the frame edge.
        boxes = np.clip(decode(outputs[:, :4], job.windows), 0, [width, height, width, height])
        boxes = inputs + weights[:, None] * (boxes - inputs)
        refined_boxes = np.full((count, 4), np.nan)
        refined_boxes[job.selected[accepted]] = boxes[accepted]
        predicted_iou = np.full((count, 2), np.nan)
        scores = job.detections.scores
        if self.spec.predicts_iou:
            predicted_iou[job.selected] = np.where(valid[:, None], outputs[:, 4:6], np.nan)
            if self.calibration.score_power > 0:
                scores = scores.copy()
                fitted = rescored(scores[job.selected], outputs, weights, self.calibration.score_power)
                scores[job.selected] = np.where(valid, fitted, scores[job.selected])
        status = list(job.status)
        for index, ok, finite in zip(job.selected, accepted, valid, strict=True):
            status[index] = RefineStatus.INVALID if not finite else RefineStatus.REFINED if ok else RefineStatus.GATED
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
        if isinstance(crops, np.ndarray) or (self.backend.takes_device_tensors and self.backend.device == crops.device):
            return crops
        return crops.cpu().numpy()


def merge_iteration(previous: RefinedDetections, again: RefinedDetections) -> RefinedDetections:
    """Fold a later iteration into the result: where it refined a box, its box and predictions win."""
    refined = again.changed[:, None]
    boxes = np.where(refined, again.refined_boxes, previous.refined_boxes)
    predicted = np.where(refined, again.predicted_iou, previous.predicted_iou)
    scores = np.where(again.changed, again.scores, previous.scores)
    # The detections of a later iteration are the moved boxes; report against the original ones.
    return RefinedDetections(previous.detections, boxes, previous.status, predicted, scores)


def build_frame_refiner(
    model: ModelFile | Path | RefinerBackend,
    detector_class_names: Sequence[str] | None = None,
    *,
    backend: str = "auto",
    device: str = "cpu",
    max_batch: int = 32,
    min_size: float = 0.0,
    policy: Policy | None = None,
    flip_tta: bool = False,
    iterations: int = 1,
    workers: int = 2,
    queue_size: int | None = None,
    gpu_crops: bool | None = None,
    triton_url: str | None = None,
    triton_model: str | None = None,
    triton_timeout_s: float | None = None,
    precision: str | None = None,
    profile: str | None = None,
    detector_profile: str = GENERIC_PROFILE,
    max_refine: int | None = None,
    gate: bool = True,
) -> FrameRefiner:
    """A FrameRefiner for a detector's classes: the one place one is put together.

    `model`: a refiner file (read once here, or already read) or a backend already open (benchmarks
    that share or wrap one; `backend`, `device`, `max_batch`, `precision` and the triton options are then unused).
    `precision` "fp32" keeps OpenVINO at full precision (None: BF16 where the CPU has it).
    The class mapping is checked from the model's spec before the model is loaded (exporting a
    checkpoint to ONNX the first time takes seconds); `detector_class_names` None: the refiner's own
    classes plus OTHER_CLASS, for callers that name classes per box (Refiner). `queue_size`: crops live in a ring of
    queue_size + 2 buffers, for a pipeline whose crop and refine stages run in separate threads;
    None: one buffer, for callers that refine each frame before cropping the next.
    `profile` (--profile) or else `detector_profile` (the detector's) picks the calibration profile;
    `max_refine` (--max-refine) bounds the boxes refined per frame; `gate` False refines every box
    the gate would skip (calibration measures their gain).
    """
    if not isinstance(model, RefinerBackend):
        model = ModelFile.of(model)
    spec = model.spec
    names = (*spec.class_names, OTHER_CLASS) if detector_class_names is None else tuple(detector_class_names)
    mapping = ClassMapping.by_name(names, spec.class_names)
    runtime = model if isinstance(model, RefinerBackend) else open_backend(
        backend, model, device, max_batch=max_batch, triton_url=triton_url, triton_model=triton_model,
        triton_timeout_s=triton_timeout_s, precision=precision,
    )
    # Cropping on the GPU pays off only when the crops can stay there, i.e. the backend takes device tensors.
    use_gpu_crops = gpu_crops if gpu_crops is not None else device.startswith("cuda") and runtime.takes_device_tensors
    if use_gpu_crops:
        from pipeline.refine.gpu_crops import GpuCropper

        cropper: Any = GpuCropper(spec.input_size, runtime.device)
    elif queue_size is None:
        cropper = CpuCropper(spec.input_size, workers=workers)
    else:
        from pipeline.refine.crop_ring import CropperRing

        cropper = CropperRing(spec.input_size, workers, queue_size)
    return FrameRefiner(runtime, mapping, cropper, min_size=min_size, policy=policy, flip_tta=flip_tta, iterations=iterations,
                        profile=profile, detector_profile=detector_profile, max_refine=max_refine, gate=gate)
