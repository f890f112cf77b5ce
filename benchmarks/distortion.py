"""Refined IoU vs distortion of the mixture centre (paper section 5, figure 8).

As in the paper, ground-truth boxes are fed to the refiner and only the object centre in the
mixture data is distorted: c = (cx + dx, cy + dy), dx, dy ~ U(-d, d), here with d a fraction of
the box's width (dx) and height (dy). The crop and everything else go through FrameRefiner;
the IoU between refined and ground-truth boxes is averaged per d (1.0 would be ideal).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from benchmarks.accuracy import RepeatCache, category_names, read_image, scored_policies, select_images
from benchmarks.report import environment, markdown_table, write_report
from pipeline.backends import KINDS, RefinerBackend, open_backend
from pipeline.core.geometry import box_iou_pairs
from pipeline.core.types import Detections, Frame, RefineStatus
from pipeline.data.coco import load_ground_truth
from pipeline.refine.policy import Policy
from pipeline.refine.refiner import build_frame_refiner

MIN_SIDE = 16.0  # pixels: smaller ground truth is not what this study is about


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--refiner", type=Path, required=True)
    parser.add_argument("--distortions", default="0,0.05,0.1,0.2,0.3,0.4,0.5", help="maximum distortions d")
    parser.add_argument("--split", choices=("val", "all"), default="val")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--backend", choices=KINDS, default="onnxruntime")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="report JSON (a .md and a .png are written beside it)")


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    ground_truth = load_ground_truth(args.annotations)
    image_ids = select_images(ground_truth, args.split, args.max_images)
    distortions = [float(d) for d in args.distortions.split(",")]
    backend = open_backend(args.backend, args.refiner)
    try:
        policies = scored_policies(backend.spec)
        curves = {policy: [] for policy in policies}
        for distortion in distortions:
            ious = refined_ious(ground_truth, args.images, image_ids, backend, policies, distortion, args.seed)
            for policy in policies:
                curves[policy].append(round(float(ious[policy].mean()), 4))
    finally:
        backend.close()
    count = len(ious["replace"])
    results = {
        "refiner": str(args.refiner),
        "images": len(image_ids),
        "objects": count,
        "distortions": distortions,
        "mean_iou": curves,
    }
    rows = [[d, *(curves[p][i] for p in policies)] for i, d in enumerate(distortions)]
    body = (
        f"{count} ground-truth objects (>= {MIN_SIDE:.0f} px) in {len(image_ids)} images ({args.split} split).\n\n"
        + markdown_table(["max centre distortion d (x box size)", *(f"mean IoU, {p}" for p in policies)], rows)
    )
    if args.out is not None:
        plot(distortions, curves, Path(args.out).with_suffix(".png"))
        body += f"\n\n![refined IoU vs centre distortion]({Path(args.out).with_suffix('.png').name})\n"
    write_report(args.out, "Refined IoU vs centre distortion (paper figure 8)", env, results, body)


def refined_ious(
    ground_truth: COCO,
    images_dir: Path,
    image_ids: list[int],
    backend: RefinerBackend,
    policies: tuple[Policy, ...],
    distortion: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """IoU with ground truth of every refined GT box, per policy, with the mixture centre distorted by up to d."""
    names, category_ids = category_names(ground_truth)
    class_of = {int(category): index for index, category in enumerate(category_ids)}
    cached = RepeatCache(backend)
    refiners = {policy: build_frame_refiner(cached, names, policy=policy, workers=1) for policy in policies}
    rng = np.random.default_rng(seed)
    ious: dict[str, list[np.ndarray]] = {policy: [] for policy in refiners}
    columns = backend.spec.num_classes + np.arange(4)  # cx, cy, w, h in window coordinates
    try:
        for index, image_id in enumerate(image_ids):
            annotations = [
                a for a in ground_truth.imgToAnns[image_id] if not a.get("iscrowd", 0) and min(a["bbox"][2:]) >= MIN_SIDE
            ]
            if not annotations:
                continue
            xywh = np.array([a["bbox"] for a in annotations], dtype=np.float64)
            boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            classes = np.array([class_of[a["category_id"]] for a in annotations])
            detections = Detections(boxes, np.ones(len(boxes)), classes, names)
            file_name = ground_truth.imgs[image_id]["file_name"]
            frame = Frame(index, read_image(images_dir / file_name), None, file_name)
            shift = rng.uniform(-distortion, distortion, size=(len(boxes), 2))
            for policy, refiner in refiners.items():
                job = refiner.prepare(frame, detections)
                vectors = job.vectors.copy()
                vectors[:, columns[:2]] += shift[job.selected] * vectors[:, columns[2:]]
                refined = refiner.finish(dataclasses.replace(job, vectors=vectors))
                kept = np.array([status in (RefineStatus.REFINED, RefineStatus.GATED) for status in refined.status])
                ious[policy].append(box_iou_pairs(refined.boxes[kept], boxes[kept]))
    finally:
        for refiner in refiners.values():
            refiner.cropper.close()
    return {policy: np.concatenate(values) if values else np.zeros(0) for policy, values in ious.items()}


def plot(distortions: list[float], curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(5, 3.5))
    for policy, values in curves.items():
        axes.plot(distortions, values, marker="o", label=f"refined ({policy})")
    axes.axhline(1.0, color="grey", linestyle=":", label="input (ground truth)")
    axes.set_xlabel("maximum centre distortion d (fraction of box size)")
    axes.set_ylabel("mean IoU with ground truth")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
