"""COCO AP of a detector's boxes before and after refinement, through the pipeline's FrameRefiner.

Input boxes come from a detections file, from a detector, or from ground truth jittered by a
known relative error (--jitter). Every image goes through FrameRefiner exactly as in a video run
(class mapping by name, windows, CPU crops, backend, acceptance policy); with a refiner that
predicts its IoU, every policy is scored ("replace" always takes the refined box, "gate" only
where the refiner predicts an improvement, "blend" mixes the two by the predicted gain). --split val keeps the project's hold-out images
(pipeline.data.split.is_validation(file_name)), so a refiner is never scored on its training images.
"""

from __future__ import annotations

import argparse
import hashlib
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools.coco import COCO

from benchmarks.coco_eval import coco_results
from pipeline.data.jitter import jittered_detections
from benchmarks.report import environment, markdown_table, write_report
from pipeline.backends import KINDS, RefinerBackend, open_backend
from pipeline.core.spec import RefinerSpec
from pipeline.core.types import Detections, Frame, RefineStatus
from pipeline.data.coco import AP_KEYS, coco_ap, coco_ap_by_class, load_ground_truth
from pipeline.data.split import VALIDATION_FRACTION, is_validation
from pipeline.io.detection_files import ReplayDetector
from pipeline.io.detectors import Detector, open_detector
from pipeline.refine.class_mapping import ClassMapping
from pipeline.refine.policy import POLICIES, Policy, choose_profile, default_policy
from pipeline.refine.refiner import build_frame_refiner

def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Ground truth, the boxes to refine (a file, jittered GT or a detector), the refiner, the split."""
    parser.add_argument("--annotations", type=Path, required=True, help="COCO ground-truth json")
    parser.add_argument("--images", type=Path, required=True, help="folder the GT file_names are relative to")
    boxes = parser.add_mutually_exclusive_group(required=True)
    boxes.add_argument("--detections", type=Path, help="COCO results json (or MOT det.txt) to refine")
    boxes.add_argument("--jitter", type=float, help="make detections from GT: sides moved by N(0, SIGMA x side)")
    boxes.add_argument("--detector", type=Path, help="YOLO model run on every image")
    parser.add_argument("--seed", type=int, default=0, help="seed of --jitter")
    parser.add_argument("--refiner", type=Path, required=True)
    parser.add_argument("--split", choices=("val", "train", "all"), default="all",
                        help="val: the held-out images; train: the refiners' training images (for calibration)")
    parser.add_argument("--backend", choices=KINDS, default="onnxruntime")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=None,
                        help="OpenVINO's float precision (default: BF16 where the CPU has it); an .int8.onnx keeps its int8 layers")
    parser.add_argument("--max-images", type=int, default=None, help="first N images of the split (quick checks)")
    parser.add_argument("--out", type=Path, default=None, help="report JSON (a .md is written beside it)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--policy", choices=POLICIES, default=None, help="the headline policy; default: the refiner's")
    parser.add_argument("--flip-tta", action="store_true", help="refine the mirrored crop too and average")
    parser.add_argument("--iterations", type=int, default=1, help="refinement passes per box")
    parser.add_argument("--min-size", type=float, default=0.0, help="refine only boxes at least this many px wide and high")
    parser.add_argument("--per-class", action="store_true", help="also AP per class: input boxes and the headline policy")
    parser.add_argument("--profile", default=None,
                        help="calibration profile (default: the input's detector's, as a run picks it: a YOLOv8n model -> yolov8n, "
                             "detection files and jitter -> generic)")
    parser.add_argument("--max-refine", type=int, default=None, help="refine at most N boxes per image, highest expected gain first")


def open_inputs(args: argparse.Namespace) -> tuple[COCO, list[int], Detector, RefinerBackend]:
    """Ground truth, the selected image ids, the boxes to refine and the refiner, from the CLI."""
    ground_truth = load_ground_truth(args.annotations)
    image_ids = select_images(ground_truth, args.split, args.max_images)
    return ground_truth, image_ids, input_detector(args, ground_truth, image_ids), open_backend(args.backend, args.refiner, args.device, precision=args.precision)


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    ground_truth, image_ids, detector, backend = open_inputs(args)
    try:
        policy = args.policy or default_policy(backend.spec)
        policies = scored_policies(backend.spec)
        if policy not in policies:
            raise SystemExit(f"--policy {policy} needs a refiner that predicts IoU; {args.refiner} does not")
        options = {"flip_tta": args.flip_tta, "iterations": args.iterations, "min_size": args.min_size,
                   "profile": args.profile, "detector_profile": detector.profile, "max_refine": args.max_refine}
        scores, counts, entries = refine_and_score(ground_truth, args.images, image_ids, detector, backend, policies, options)
    finally:
        backend.close()
    results = {
        "images": len(image_ids),
        "split": args.split,
        "input": describe_input(args),
        "refiner": str(args.refiner),
        "backend": backend.name,
        "policy": policy,
        "options": options,
        "profile": choose_profile(backend.spec, detector.profile, args.profile)[0],
        "status_counts": counts,
        "share_sent_to_network": {policy: sent_share(count) for policy, count in counts.items()},
        "baseline": scores["baseline"],
        "refined": scores[policy],
        **{f"refined_{name}": scores[name] for name in policies},
    }
    if args.per_class:
        results["per_class"] = per_class(ground_truth, image_ids, entries["baseline"], entries[policy])
    write_report(args.out, f"Refinement accuracy: {describe_input(args)}", env, results, accuracy_markdown(results, policies))


class RepeatCache(RefinerBackend):
    """Answers a batch identical to one of the last few (same crops and vectors) from memory.

    Every scored policy refines the same detections of the same image, so their first passes are
    identical calls; only the first is run. Later passes (iterations) differ per policy and run.
    The base class chunks a call by max_batch, so the cache holds a few chunks, not one call.
    """

    def __init__(self, backend: RefinerBackend, keep: int = 8) -> None:
        super().__init__(backend.spec, backend.max_batch)
        self.name = backend.name
        self._backend = backend
        self._keep = keep
        self._answers: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def _run(self, crops: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        key = hashlib.sha1(crops.tobytes() + vectors.tobytes()).digest()
        if key not in self._answers:
            self._answers[key] = self._backend.refine(crops, vectors)
            if len(self._answers) > self._keep:
                self._answers.popitem(last=False)
        return self._answers[key].copy()

    def close(self) -> None:
        self._backend.close()


def sent_share(counts: dict[str, int]) -> float | None:
    """Share of the boxes the refiner could refine (not unmapped, unusable or small) that were cropped and sent to it."""
    sent = counts.get(RefineStatus.REFINED, 0) + counts.get(RefineStatus.GATED, 0)
    candidates = sent + counts.get(RefineStatus.SKIPPED_GAIN, 0) + counts.get(RefineStatus.SKIPPED_BUDGET, 0)
    return sent / candidates if candidates else None


def per_class(ground_truth: COCO, image_ids: list[int], baseline: list[dict], refined: list[dict]) -> list[dict[str, Any]]:
    """Rows per class with ground truth, most boxes first: boxes, input AP, refined AP."""
    before, after = coco_ap_by_class(ground_truth, baseline, image_ids), coco_ap_by_class(ground_truth, refined, image_ids)
    rows = [{"class": name, "boxes": before[name]["boxes"], "baseline": before[name]["AP"], "refined": after[name]["AP"]} for name in before]
    return sorted(rows, key=lambda row: (-row["boxes"], row["class"]))


def scored_policies(spec: RefinerSpec) -> tuple[Policy, ...]:
    """Every policy where the refiner predicts its IoU (gate and blend need it), else only "replace"."""
    return POLICIES if spec.predicts_iou else ("replace",)


def select_images(ground_truth: COCO, split: str, limit: int | None = None) -> list[int]:
    image_ids = sorted(ground_truth.imgs)
    if split in ("val", "train"):
        keep = split == "val"
        image_ids = [i for i in image_ids if is_validation(ground_truth.imgs[i]["file_name"], VALIDATION_FRACTION) == keep]
    return image_ids[:limit]


def category_names(ground_truth: COCO) -> tuple[tuple[str, ...], np.ndarray]:
    """GT class names in category-id order and the category id of each class index."""
    categories = sorted(ground_truth.cats.values(), key=lambda category: category["id"])
    return tuple(c["name"] for c in categories), np.array([c["id"] for c in categories], dtype=np.int64)


def input_detector(args: argparse.Namespace, ground_truth: COCO, image_ids: list[int]) -> Detector:
    """The boxes to refine as a Detector over frames named by their GT file_name."""
    if args.jitter is None:
        return open_detector(args.detections or args.detector, coco_gt=args.annotations, device=args.device)
    names, category_ids = category_names(ground_truth)
    class_of = {int(category): index for index, category in enumerate(category_ids)}
    by_image = {
        image_id: Detections(boxes, scores, np.array([class_of[int(c)] for c in categories], dtype=np.int64), names)
        for image_id, (boxes, scores, categories) in jittered_detections(ground_truth, image_ids, args.jitter, args.seed).items()
    }
    id_of_name = {ground_truth.imgs[image_id]["file_name"]: image_id for image_id in image_ids}
    return ReplayDetector(by_image, names, lambda frame: id_of_name[frame.name], f"GT jittered by sigma {args.jitter}")


def refine_and_score(
    ground_truth: COCO,
    images_dir: Path,
    image_ids: list[int],
    detector: Detector,
    backend: RefinerBackend,
    policies: tuple[Policy, ...],
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, dict[str, float | None]], dict[str, dict[str, int]], dict[str, list[dict]]]:
    """AP of the input boxes ("baseline") and of the refined boxes per policy; refine statuses per
    policy; the COCO results each AP was computed from.

    `options` are FrameRefiner keyword arguments (flip_tta, iterations, min_size, profile, detector_profile, max_refine).
    """
    gt_names, gt_category_ids = category_names(ground_truth)
    to_gt = ClassMapping.by_name(detector.class_names, gt_names).table  # detector class -> GT class index or -1
    cached = RepeatCache(backend)
    refiners = {
        policy: build_frame_refiner(cached, detector.class_names, policy=policy, workers=1, **(options or {})) for policy in policies
    }
    rescoring = next(iter(refiners.values())).calibration.score_power > 0
    results: dict[str, list[dict]] = {"baseline": [], **{policy: [] for policy in policies}}
    if rescoring:  # the refiner rescores too: also score its boxes under the detector's own scores
        results.update({f"{policy}_boxes_only": [] for policy in policies})
    counts: dict[str, Counter] = {policy: Counter() for policy in policies}
    try:
        for index, image_id in enumerate(image_ids):
            file_name = ground_truth.imgs[image_id]["file_name"]
            frame = Frame(index, read_image(images_dir / file_name), None, file_name)
            detections = detector.detect(frame)
            evaluable = to_gt[detections.class_ids] >= 0
            categories = gt_category_ids[to_gt[detections.class_ids][evaluable]]
            scores = detections.scores[evaluable]
            results["baseline"] += coco_results(image_id, detections.boxes[evaluable], scores, categories)
            if not len(detections):
                continue
            for policy, refiner in refiners.items():
                refined = refiner(frame, detections)
                counts[policy].update(str(status) for status in refined.status)
                results[policy] += coco_results(image_id, refined.boxes[evaluable], refined.scores[evaluable], categories)
                if rescoring:
                    results[f"{policy}_boxes_only"] += coco_results(image_id, refined.boxes[evaluable], scores, categories)
    finally:
        for refiner in refiners.values():
            refiner.cropper.close()
    scores_by_set = {name: coco_ap(ground_truth, entries, image_ids) for name, entries in results.items()}
    return scores_by_set, {policy: dict(counter) for policy, counter in counts.items()}, results


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read image {path}; check --images")
    return image


def describe_input(args: argparse.Namespace) -> str:
    if args.jitter is not None:
        return f"GT jittered, sigma {args.jitter}, seed {args.seed}"
    return f"detections {args.detections}" if args.detections else f"detector {args.detector}"


def accuracy_markdown(results: dict[str, Any], policies: tuple[Policy, ...]) -> str:
    """Percent table: baseline, each policy, and each policy's change over the baseline."""
    baseline = results["baseline"]
    rows = [["baseline (input boxes)", *(percent(baseline[m]) for m in AP_KEYS)]]
    for policy in policies:
        refined = results[f"refined_{policy}"]
        marker = " (default)" if policy == results["policy"] else ""
        rows.append([f"refined, {policy}{marker}", *(percent(refined[m]) for m in AP_KEYS)])
        rows.append([f"change, {policy}", *(change(refined[m], baseline[m]) for m in AP_KEYS)])
    counts = "; ".join(f"{policy}: {dict(sorted(c.items()))}" for policy, c in results["status_counts"].items())
    shares = "; ".join(f"{policy}: {'n/a' if share is None else f'{100 * share:.1f}%'}"
                       for policy, share in results.get("share_sent_to_network", {}).items())
    options = ", ".join(f"{key} {value}" for key, value in results.get("options", {}).items())
    by_class = ""
    if "per_class" in results:
        class_rows = [[row["class"], row["boxes"], percent(row["baseline"]), percent(row["refined"]), change(row["refined"], row["baseline"])]
                      for row in results["per_class"]]
        by_class = (f"\nAP % per class ({results['policy']} policy; a class with few boxes is weak evidence):\n\n"
                    + markdown_table(["class", "boxes", "input", "refined", "change"], class_rows) + "\n")
    return (
        f"{results['images']} images ({results['split']} split), refiner `{results['refiner']}` on {results['backend']}"
        f" ({options}), calibration profile `{results.get('profile', 'generic')}`.\n\n"
        + markdown_table(["boxes", *(f"{m} %" for m in AP_KEYS)], rows)
        + f"\n\nRefine status per object: {counts}\n\nShare of the refinable boxes cropped and sent to the network: {shares}\n"
        + by_class
    )


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def change(refined: float | None, baseline: float | None) -> str:
    return "n/a" if refined is None or baseline is None else f"{100 * (refined - baseline):+.1f}"
