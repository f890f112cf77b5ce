"""Calibrate a refiner on a real detector's boxes: blend temperature and IoU-aware scores, and a reliability table.

One refiner pass over the detector's boxes of the chosen split, then, for every blend temperature
and score power on a grid, the COCO AP of the boxes and scores the pipeline would output. Run on
the training split with --write, the best setting is stored in the refiner file's spec, so the
pipeline uses it wherever the file goes; held-out images are for judging it, not for fitting.

The reliability table says whether the IoU head knows when to act: per bin of predicted IoU gain
(refined minus input), how many boxes fall there and the gain they really got; per bin of
predicted input IoU, the real IoU of the detector's box.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import numpy as np

from benchmarks.accuracy import add_input_arguments, describe_input, open_inputs
from benchmarks.coco_eval import coco_results
from benchmarks.mixing import refine_all
from benchmarks.report import environment, markdown_table, write_report
from pipeline.data.coco import coco_ap
from pipeline.model.checkpoint import replace_spec
from pipeline.refine.policy import Calibration, refined_weight, rescored

DEFAULT_TEMPERATURES = (0.01, 0.02, 0.05, 0.1)
DEFAULT_MARGINS = (0.0, 0.02, 0.05, 0.1, 1.0)  # 1.0: no predicted gain clears it, every box stays
DEFAULT_POWERS = (0.0,)  # IoU-aware scores are opt-in (--powers): fitted on YOLOv8n they cost other detectors AP
GAIN_BINS = (-1.0, -0.05, -0.02, -0.01, 0.0, 0.01, 0.02, 0.05, 1.0)
IOU_BINS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--temperatures", type=float, nargs="+", default=DEFAULT_TEMPERATURES, help="blend temperatures to try")
    parser.add_argument("--margins", type=float, nargs="+", default=DEFAULT_MARGINS, help="gain margins to try")
    parser.add_argument("--powers", type=float, nargs="+", default=DEFAULT_POWERS, help="score powers to try (0: detector's scores)")
    parser.add_argument("--write", action="store_true", help="store the best setting in the refiner file (training split only)")


def main(args: argparse.Namespace) -> None:
    if args.write and args.split != "train":
        raise SystemExit("error: --write fits the calibration, so it needs --split train; judge it on --split val")
    env = environment(args.argv)
    ground_truth, image_ids, detector, backend = open_inputs(args)
    try:
        if not backend.spec.predicts_iou:
            raise SystemExit(f"error: {args.refiner} does not predict its IoU; there is nothing to calibrate")
        spec = backend.spec
        boxes = refine_all(ground_truth, args.images, image_ids, detector, backend, flip_tta=False)
    finally:
        backend.close()
    settings = [Calibration(t, m, p) for t in args.temperatures for m in args.margins for p in args.powers]
    grid = {setting: coco_ap(ground_truth, outputs(boxes, setting), image_ids)["AP"] for setting in settings}
    baseline = coco_ap(ground_truth, outputs(boxes, Calibration(gain_margin=1.0)), image_ids)["AP"]
    # Ties go to the setting that changes least: larger margin, smaller power.
    chosen, best = max(grid.items(), key=lambda item: (round(item[1], 5), item[0].gain_margin, -item[0].score_power))
    results: dict[str, Any] = {
        "images": len(image_ids), "split": args.split, "input": describe_input(args), "refiner": str(args.refiner),
        "boxes": len(boxes["scores"]), "baseline_ap": baseline,
        "grid": [{**setting.__dict__, "ap": ap} for setting, ap in grid.items()],
        "best": {**chosen.__dict__, "ap": best},
        "current": Calibration.of(spec).__dict__,
        "current_ap": coco_ap(ground_truth, outputs(boxes, Calibration.of(spec)), image_ids)["AP"],
        "reliability": reliability(boxes),
    }
    if args.write:
        calibration = replace(chosen, fitted_on=f"{describe_input(args)} on {args.annotations.name}, {args.split} split, "
                                                f"{len(image_ids)} images")
        replace_spec(args.refiner, spec.__class__(**{**spec.__dict__, "extra": {**spec.extra, **calibration.as_extra()}}))
        results["written"] = calibration.__dict__
    write_report(args.out, f"Calibration on real boxes: {describe_input(args)}", env, results, calibration_markdown(results))


def outputs(boxes: dict[str, np.ndarray], calibration: Calibration) -> list[dict]:
    """COCO results the pipeline would write with the blend policy under this calibration."""
    outputs = np.concatenate([boxes["refined"], boxes["predicted"]], axis=1)  # boxes stand in for the window coordinates
    weight = refined_weight(outputs, "blend", calibration)
    mixed = boxes["input"] + weight[:, None] * (boxes["refined"] - boxes["input"])
    scores = rescored(boxes["scores"], outputs, weight, calibration.score_power)
    entries: list[dict] = []
    for image_id in np.unique(boxes["image_id"]):
        rows = boxes["image_id"] == image_id
        entries += coco_results(int(image_id), mixed[rows], scores[rows], boxes["categories"][rows])
    return entries


def reliability(boxes: dict[str, np.ndarray]) -> dict[str, list[dict]]:
    """Predicted vs real IoU gain per bin of predicted gain; predicted vs real input IoU per bin."""
    predicted_gain = boxes["predicted"][:, 1] - boxes["predicted"][:, 0]
    real_gain = boxes["iou_refined"] - boxes["iou_input"]

    def table(predicted: np.ndarray, real: np.ndarray, edges: tuple[float, ...]) -> list[dict]:
        rows = []
        for low, high in zip(edges[:-1], edges[1:]):
            inside = (predicted >= low) & (predicted < high) if high < edges[-1] else (predicted >= low)
            if inside.any():
                rows.append({"bin": [low, high], "boxes": int(inside.sum()), "predicted": float(predicted[inside].mean()),
                             "real": float(real[inside].mean()), "real_positive_share": float((real[inside] > 0).mean())})
        return rows

    return {"gain": table(predicted_gain, real_gain, GAIN_BINS),
            "input_iou": table(boxes["predicted"][:, 0], boxes["iou_input"], IOU_BINS)}


def calibration_markdown(results: dict[str, Any]) -> str:
    powers = sorted({row["score_power"] for row in results["grid"]})
    rows = sorted({(row["blend_temperature"], row["gain_margin"]) for row in results["grid"]})
    ap = {(row["blend_temperature"], row["gain_margin"], row["score_power"]): row["ap"] for row in results["grid"]}
    grid = [[f"T {t:g}, margin {m:g}", *(f"{100 * ap[(t, m, p)]:.1f}" for p in powers)] for t, m in rows]
    best = results["best"]
    gain = [[f"{row['bin'][0]:+.2f} .. {row['bin'][1]:+.2f}", row["boxes"], f"{row['predicted']:+.3f}", f"{row['real']:+.3f}",
             f"{100 * row['real_positive_share']:.0f}%"] for row in results["reliability"]["gain"]]
    iou = [[f"{row['bin'][0]:.1f} .. {row['bin'][1]:.1f}", row["boxes"], f"{row['predicted']:.3f}", f"{row['real']:.3f}"]
           for row in results["reliability"]["input_iou"]]
    written = f"\n\nWritten to the refiner file: {results['written']}" if "written" in results else ""
    return (
        f"{results['images']} images ({results['split']} split), {results['boxes']} boxes, refiner `{results['refiner']}`. "
        f"Detector's boxes and scores: AP {100 * results['baseline_ap']:.1f}; with the model's current calibration "
        f"{100 * results['current_ap']:.1f}. Best: blend temperature {best['blend_temperature']:g}, gain margin {best['gain_margin']:g}, "
        f"score power {best['score_power']:g}, AP {100 * best['ap']:.1f} ({100 * (best['ap'] - results['baseline_ap']):+.1f}).{written}\n\n"
        "AP % of the pipeline's output (blend policy) per blend temperature and gain margin (rows; margin 1 = boxes left alone) "
        "and score power (columns; 0 = detector's scores):\n\n"
        + markdown_table(["", *(f"power {p:g}" for p in powers)], grid)
        + "\n\nReliability of the predicted gain (refined minus input IoU):\n\n"
        + markdown_table(["predicted gain", "boxes", "mean predicted", "mean real", "real gain > 0"], gain)
        + "\n\nReliability of the predicted IoU of the detector's box:\n\n"
        + markdown_table(["predicted input IoU", "boxes", "mean predicted", "mean real"], iou) + "\n"
    )
