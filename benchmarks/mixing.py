"""How much of the refined box to take: COCO AP for every way of mixing it with the input box.

One refiner pass per image ("replace" policy, so every refined box is kept), then the input box
and the refined box are mixed as w x refined + (1 - w) x input with:
- fixed weights w (0 = the detector's boxes, 1 = the paper's refiner),
- the blend policy's weight, sigmoid(predicted IoU gain / T), for several temperatures T,
- the per-box oracle that picks whichever of the two boxes overlaps its ground truth more: the
  ceiling of any gate that chooses between the two boxes.
It answers "is the refiner or the gate the limit?" and, run with --split train, calibrates the
blend temperature on training images instead of on the held-out ones it is judged on.
It also says where the refiner's error sits: mean error per side as a fraction of the true box's
size, before and after refining, and how the boxes fare whose true box reaches outside the crop
window (the refiner cannot see that edge; only a larger padding or a second iteration can).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from benchmarks.accuracy import add_input_arguments, category_names, describe_input, open_inputs, read_image
from benchmarks.coco_eval import coco_results
from benchmarks.report import environment, markdown_table, write_report
from pipeline.core.geometry import xywh_to_xyxy
from pipeline.core.types import Frame, RefineStatus
from pipeline.data.coco import coco_ap
from pipeline.io.detectors import Detector
from pipeline.refine.class_mapping import ClassMapping
from pipeline.core.calibration import BLEND_TEMPERATURE
from pipeline.refine.refiner import build_frame_refiner

DEFAULT_WEIGHTS = (0.0, 0.3, 0.5, 0.7, 0.8, 1.0)
DEFAULT_TEMPERATURES = (0.02, 0.05, 0.1, 0.2)
MATCHED_IOU = 0.5  # the error breakdown counts boxes that overlap their true box at least this much


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--flip-tta", action="store_true", help="refine the mirrored crop too and average")
    parser.add_argument("--weights", type=float, nargs="+", default=DEFAULT_WEIGHTS, help="fixed mixing weights")
    parser.add_argument("--temperatures", type=float, nargs="+", default=DEFAULT_TEMPERATURES, help="blend temperatures")


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    ground_truth, image_ids, detector, backend = open_inputs(args)
    try:
        if not backend.spec.predicts_iou:
            raise SystemExit(f"{args.refiner} does not predict its IoU; the mixing study needs the quality head")
        boxes = refine_all(ground_truth, args.images, image_ids, detector, backend, args.flip_tta)
        padding = backend.spec.padding
    finally:
        backend.close()
    scores = {name: coco_ap(ground_truth, results, image_ids)["AP"] for name, results in mixtures(boxes, args).items()}
    results: dict[str, Any] = {
        "images": len(image_ids), "split": args.split, "input": describe_input(args), "refiner": str(args.refiner),
        "flip_tta": args.flip_tta, "boxes": len(boxes["scores"]), "default_temperature": BLEND_TEMPERATURE,
        "keys": "AP of: weight_<w> (fixed mix), blend_t<T> (blend policy at temperature T), oracle (per-box best of input/refined)",
        "ap": scores,
        "mean_iou": {"input": float(boxes["iou_input"].mean()), "refined": float(boxes["iou_refined"].mean())},
        "errors": error_breakdown(boxes, padding),
    }
    write_report(args.out, f"Mixing input and refined boxes: {describe_input(args)}", env, results, mixing_markdown(results))


def refine_all(ground_truth: Any, images_dir: Path, image_ids: list[int], detector: Detector, backend: Any,
               flip_tta: bool) -> dict[str, np.ndarray]:
    """Per evaluable detection: image id, input box, refined box, predicted IoUs, score, category, true IoUs;
    and what the gate knows of it before cropping: whether it was a candidate (mapped, usable), its
    refiner class, its frame's size and how many candidates that frame held. Every candidate is
    refined (no gate), so calibration sees the gain of the boxes a gate would skip."""
    gt_names, gt_category_ids = category_names(ground_truth)
    to_gt = ClassMapping.by_name(detector.class_names, gt_names).table
    refiner = build_frame_refiner(backend, detector.class_names, policy="replace", flip_tta=flip_tta, workers=1, gate=False)
    to_refiner = refiner.mapping.to_refiner(np.arange(len(detector.class_names)))
    keys = ("image_id", "input", "refined", "predicted", "scores", "categories", "candidate", "frame_size", "boxes_in_frame")
    rows: dict[str, list] = {key: [] for key in (*keys, "refiner_class")}
    try:
        for index, image_id in enumerate(image_ids):
            name = ground_truth.imgs[image_id]["file_name"]
            frame = Frame(index, read_image(images_dir / name), None, name)
            detections = detector.detect(frame)
            if not len(detections):
                continue
            refined = refiner(frame, detections)
            candidates = sum(status == RefineStatus.REFINED for status in refined.status)
            for i in np.flatnonzero(to_gt[detections.class_ids] >= 0):
                changed = refined.changed[i]
                rows["image_id"].append(image_id)
                rows["input"].append(detections.boxes[i])
                rows["refined"].append(refined.refined_boxes[i] if changed else detections.boxes[i])
                rows["predicted"].append(refined.predicted_iou[i] if changed else (1.0, 0.0))  # unrefined: keep input
                rows["scores"].append(detections.scores[i])
                rows["categories"].append(gt_category_ids[to_gt[detections.class_ids[i]]])
                rows["candidate"].append(changed)
                rows["frame_size"].append(frame.image.shape[1::-1])
                rows["boxes_in_frame"].append(candidates)
                refiner_id = to_refiner[detections.class_ids[i]]
                rows["refiner_class"].append(refiner.spec.class_names[refiner_id] if refiner_id >= 0 else "")
    finally:
        refiner.cropper.close()
    types = {"image_id": np.int64, "candidate": bool, "frame_size": np.int64, "boxes_in_frame": np.int64}
    boxes = {key: np.array(rows[key], dtype=types.get(key, np.float64)) for key in keys}
    boxes["refiner_class"] = np.array(rows["refiner_class"], dtype=object)
    for key, width in (("input", 4), ("refined", 4), ("predicted", 2), ("frame_size", 2)):
        boxes[key] = boxes[key].reshape(-1, width)
    boxes["iou_input"], boxes["truth"] = best_truth(ground_truth, boxes["image_id"], boxes["input"])
    boxes["iou_refined"], _ = best_truth(ground_truth, boxes["image_id"], boxes["refined"])
    return boxes


def best_truth(ground_truth: Any, image_ids: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, xyxy) of the ground-truth box (not crowd) each box overlaps most; (0, NaN) where none."""
    best_iou, truth = np.zeros(len(boxes)), np.full_like(boxes, np.nan)
    for image_id in np.unique(image_ids):
        rows = np.flatnonzero(image_ids == image_id)
        candidates = xywh_to_xyxy([a["bbox"] for a in ground_truth.imgToAnns[int(image_id)] if not a.get("iscrowd", 0)])
        if len(candidates):
            best = box_iou(torch.from_numpy(boxes[rows]), torch.from_numpy(candidates)).max(dim=1)
            best_iou[rows], truth[rows] = best.values.numpy(), candidates[best.indices.numpy()]
    return best_iou, truth


def error_breakdown(boxes: dict[str, np.ndarray], padding: float) -> dict[str, Any]:
    """Mean |error| per side (x1, y1, x2, y2; fraction of the true box's width/height) of the input and
    refined boxes, and the boxes whose true box leaves the crop window at this padding.

    Only boxes that found their object (input IoU >= MATCHED_IOU) count: a false positive's "error"
    against the nearest true box says nothing about refinement.
    """
    truth = boxes["truth"]
    usable = np.isfinite(truth).all(axis=1) & (boxes["iou_input"] >= MATCHED_IOU)
    truth, inputs, refined = truth[usable], boxes["input"][usable], boxes["refined"][usable]
    size = np.tile(truth[:, 2:] - truth[:, :2], 2)
    input_size = np.tile(inputs[:, 2:] - inputs[:, :2], 2)
    window = inputs + padding * input_size * np.array([-1.0, -1.0, 1.0, 1.0])
    outside = ((truth[:, :2] < window[:, :2]) | (truth[:, 2:] > window[:, 2:])).any(axis=1)
    iou_input, iou_refined = boxes["iou_input"][usable], boxes["iou_refined"][usable]

    def mean_iou(mask: np.ndarray, iou: np.ndarray) -> float | None:
        return float(iou[mask].mean()) if mask.any() else None

    return {
        "matched_boxes": int(usable.sum()),
        "side_error_input": np.abs((inputs - truth) / size).mean(axis=0).round(4).tolist(),
        "side_error_refined": np.abs((refined - truth) / size).mean(axis=0).round(4).tolist(),
        "truth_outside_window_share": float(outside.mean()) if len(outside) else 0.0,
        "iou_outside_window": {"input": mean_iou(outside, iou_input), "refined": mean_iou(outside, iou_refined)},
        "iou_inside_window": {"input": mean_iou(~outside, iou_input), "refined": mean_iou(~outside, iou_refined)},
    }


def mixtures(boxes: dict[str, np.ndarray], args: argparse.Namespace) -> dict[str, list[dict]]:
    """COCO results for every mixing rule, keyed by its report name."""
    weights: dict[str, np.ndarray] = {f"weight_{w:g}": np.full(len(boxes["scores"]), w) for w in args.weights}
    gain = boxes["predicted"][:, 1] - boxes["predicted"][:, 0]
    for temperature in args.temperatures:
        weights[f"blend_t{temperature:g}"] = 1.0 / (1.0 + np.exp(-gain / temperature))
    weights["oracle"] = (boxes["iou_refined"] > boxes["iou_input"]).astype(np.float64)
    results = {}
    for name, weight in weights.items():
        mixed = weight[:, None] * boxes["refined"] + (1 - weight[:, None]) * boxes["input"]
        entries: list[dict] = []
        for image_id in np.unique(boxes["image_id"]):
            rows = boxes["image_id"] == image_id
            entries += coco_results(int(image_id), mixed[rows], boxes["scores"][rows], boxes["categories"][rows])
        results[name] = entries
    return results


def mixing_markdown(results: dict[str, Any]) -> str:
    ap = results["ap"]
    rows = [[name, f"{100 * value:.1f}", f"{100 * (value - ap['weight_0']):+.1f}" if "weight_0" in ap else "n/a"]
            for name, value in ap.items()]
    return (
        f"{results['images']} images ({results['split']} split), {results['boxes']} boxes, refiner `{results['refiner']}`"
        f" (flip TTA {results['flip_tta']}). Mean IoU with the truth: input {results['mean_iou']['input']:.3f},"
        f" refined {results['mean_iou']['refined']:.3f}. The pipeline's blend temperature is {results['default_temperature']:g}.\n\n"
        + markdown_table(["mix", "AP %", "vs input"], rows) + "\n\n" + errors_markdown(results["errors"])
    )


def errors_markdown(errors: dict[str, Any]) -> str:
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    sides = [["input", *(f"{v:.3f}" for v in errors["side_error_input"])],
             ["refined", *(f"{v:.3f}" for v in errors["side_error_refined"])]]
    outside, inside = errors["iou_outside_window"], errors["iou_inside_window"]
    return (
        f"Boxes that found their object (input IoU >= {MATCHED_IOU:g} with it): {errors['matched_boxes']}. "
        "Mean |error| per side, as a fraction of the true box's width or height:\n\n"
        + markdown_table(["boxes", "x1", "y1", "x2", "y2"], sides)
        + f"\n\nTrue box reaching outside the crop window: {100 * errors['truth_outside_window_share']:.0f}% of boxes;"
        f" mean IoU there {fmt(outside['input'])} -> {fmt(outside['refined'])}, elsewhere"
        f" {fmt(inside['input'])} -> {fmt(inside['refined'])}.\n"
    )
