"""Scores of tracked boxes against ground truth with ids: CLEAR-MOT and IDF1, jitter of standing boxes, COCO AP.

py-motmetrics 1.4.0 computes MOTA, IDF1 and ID switches; its own `iou_matrix` calls `np.asfarray`,
which NumPy 2 removed, so the distance matrix (1 - IoU, NaN below IoU 0.5, as MOTChallenge) is
made here from pipeline.core.geometry's IoU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.core.geometry import box_iou_matrix, xyxy_to_xywh
from pipeline.data.coco import coco_ap, load_ground_truth
from pipeline.core.types import NO_TRACK

MATCH_IOU = 0.5
MOT_METRICS = ("mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_unique_objects")


@dataclass(frozen=True)
class TruthFrame:
    """Ground truth of one frame: boxes (M, 4) xyxy, object ids (M,), class ids (M,), standing (M,) bool."""

    boxes: np.ndarray
    ids: np.ndarray
    class_ids: np.ndarray
    standing: np.ndarray


@dataclass(frozen=True)
class OutputFrame:
    """What a pipeline variant outputs for one frame: boxes (N, 4) xyxy, scores, class ids, track ids."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    track_ids: np.ndarray


def iou_distances(truth: np.ndarray, hypotheses: np.ndarray) -> np.ndarray:
    """(M, N) 1 - IoU, NaN where IoU < MATCH_IOU (motmetrics' "cannot match")."""
    if not len(truth) or not len(hypotheses):
        return np.empty((len(truth), len(hypotheses)))
    iou = box_iou_matrix(truth, hypotheses)
    return np.where(iou >= MATCH_IOU, 1.0 - iou, np.nan)


def mot_scores(sequences: dict[str, tuple[list[TruthFrame], list[OutputFrame]]]) -> dict[str, dict[str, float]]:
    """MOT_METRICS per sequence and over all ("OVERALL"): tracked boxes only (NO_TRACK is no hypothesis)."""
    import motmetrics

    accumulators = []
    for truth_frames, output_frames in sequences.values():
        accumulator = motmetrics.MOTAccumulator(auto_id=True)
        for truth, output in zip(truth_frames, output_frames, strict=True):
            tracked = output.track_ids != NO_TRACK
            distances = iou_distances(truth.boxes, output.boxes[tracked])
            accumulator.update(truth.ids.tolist(), output.track_ids[tracked].tolist(), distances)
        accumulators.append(accumulator)
    table = motmetrics.metrics.create().compute_many(
        accumulators, metrics=list(MOT_METRICS), names=list(sequences), generate_overall=len(sequences) > 1
    )
    return {str(name): {key: float(row[key]) for key in MOT_METRICS} for name, row in table.iterrows()}


def matched_rows(truth: np.ndarray, boxes: np.ndarray) -> dict[int, int]:
    """truth row -> output row, one to one by IoU (Hungarian), at IoU >= MATCH_IOU."""
    if not len(truth) or not len(boxes):
        return {}
    iou = np.nan_to_num(box_iou_matrix(truth, boxes))
    rows, columns = linear_sum_assignment(-iou)
    return {int(r): int(c) for r, c in zip(rows, columns, strict=True) if iou[r, c] >= MATCH_IOU}


def standing_jitter(truth_frames: list[TruthFrame], output_frames: list[OutputFrame]) -> list[float]:
    """Per standing object and pair of consecutive frames where it is matched in both: mean |change| of its
    output box's four sides, in pixels (its true box does not move, so all of it is jitter)."""
    changes = []
    previous: dict[int, np.ndarray] = {}
    for truth, output in zip(truth_frames, output_frames, strict=True):
        current = {}
        for row, column in matched_rows(truth.boxes, output.boxes).items():
            if truth.standing[row]:
                current[int(truth.ids[row])] = output.boxes[column]
        changes += [float(np.abs(box - previous[obj]).mean()) for obj, box in current.items() if obj in previous]
        previous = current
    return changes


def coco_scores(
    truth_frames: list[TruthFrame], output_frames: list[OutputFrame], class_names: tuple[str, ...]
) -> dict[str, float]:
    """COCO AP of every output box (tracked or not) on all objects, and on moving objects only
    (standing ones become crowd regions: boxes on them neither count nor cost)."""
    scores = {}
    for key, standing_is_crowd in (("AP", False), ("AP_moving", True)):
        images, annotations, results = [], [], []
        for image_id, (truth, output) in enumerate(zip(truth_frames, output_frames, strict=True)):
            images.append({"id": image_id, "width": 1, "height": 1})
            for box, class_id, standing in zip(truth.boxes, truth.class_ids, truth.standing, strict=True):
                xywh = xyxy_to_xywh(box)
                crowd = int(bool(standing) and standing_is_crowd)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(class_id) + 1,
                                    "bbox": xywh, "area": xywh[2] * xywh[3], "iscrowd": crowd})
            for box, score, class_id in zip(output.boxes, output.scores, output.class_ids, strict=True):
                if np.isfinite(box).all():
                    results.append({"image_id": image_id, "category_id": int(class_id) + 1, "bbox": xyxy_to_xywh(box),
                                    "score": float(score)})
        categories = [{"id": index + 1, "name": name} for index, name in enumerate(class_names)]
        document = {"images": images, "annotations": annotations, "categories": categories}
        scores[key] = coco_ap(load_ground_truth(document), results)["AP"]
    return scores


def supervision_ids(output_frames: list[OutputFrame]) -> tuple[list[OutputFrame], float]:
    """The same boxes tracked by supervision's ByteTrack instead (the tracker we did not pick), and its seconds.

    supervision gives ids to its own Kalman boxes and maps them back to the detections by IoU >= 0.5,
    where Ultralytics returns the index of the detection each track matched.
    """
    import supervision

    tracker = supervision.ByteTrack()
    tracked, seconds = [], 0.0
    for output in output_frames:
        started = time.perf_counter()
        detections = supervision.Detections(xyxy=output.boxes.astype(np.float32), confidence=output.scores.astype(np.float32),
                                            class_id=output.class_ids, data={"row": np.arange(len(output.boxes))})
        result = tracker.update_with_detections(detections)
        seconds += time.perf_counter() - started
        ids = np.full(len(output.boxes), NO_TRACK, dtype=np.int64)
        ids[result.data["row"]] = result.tracker_id
        tracked.append(OutputFrame(output.boxes, output.scores, output.class_ids, ids))
    return tracked, seconds
