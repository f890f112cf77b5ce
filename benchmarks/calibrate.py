"""Calibrate a refiner on a real detector's boxes: blend temperature and IoU-aware scores, and a reliability table.

One refiner pass over the detector's boxes of the chosen split, then, for every blend temperature,
gain margin, largest box side to refine and score power on a grid, the COCO AP of the boxes and
scores the pipeline would output. Run on the training split with --write, the best setting is
stored in the refiner file's spec, so the pipeline uses it wherever the file goes; held-out images
are for judging it, not for fitting. Leaving every box alone is always a candidate: where no setting
beats it, that is what is written, the report's first line says refining does not pay on these
boxes, and a pipeline run with the file warns.

The reliability table says whether the IoU head knows when to act: per bin of predicted IoU gain
(refined minus input), how many boxes fall there and the gain they really got; per bin of
predicted input IoU, the real IoU of the detector's box; per bin of box size, the gain boxes of
that size really got (the evidence for max_box_side).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from typing import Any

import numpy as np

from benchmarks.accuracy import add_input_arguments, describe_input, input_detector, open_inputs
from benchmarks.coco_eval import coco_results
from benchmarks.mixing import refine_all
from benchmarks.report import environment, markdown_table, write_report
from pipeline.core.geometry import longer_sides
from pipeline.data.coco import coco_ap
from pipeline.model.checkpoint import replace_spec
from pipeline.refine.policy import Calibration, refined_weight, rescored

DEFAULT_TEMPERATURES = (0.01, 0.02, 0.05, 0.1)
DEFAULT_MARGINS = (0.0, 0.02, 0.05, 0.1, 1.0)  # 1.0: no predicted gain clears it, every box stays
DEFAULT_MAX_BOX_SIDES = (96.0, 128.0, 192.0, math.inf)  # px; inf: every box may move
LEAVE_ALONE = Calibration(gain_margin=math.inf)  # no predicted gain clears it: every box stays
DEFAULT_POWERS = (0.0,)  # IoU-aware scores are opt-in (--powers): fitted on YOLOv8n they cost other detectors AP
GAIN_BINS = (-1.0, -0.05, -0.02, -0.01, 0.0, 0.01, 0.02, 0.05, 1.0)
IOU_BINS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SIDE_BINS = (0.0, 32.0, 64.0, 96.0, 128.0, 192.0, 256.0, math.inf)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--temperatures", type=float, nargs="+", default=DEFAULT_TEMPERATURES, help="blend temperatures to try")
    parser.add_argument("--margins", type=float, nargs="+", default=DEFAULT_MARGINS, help="gain margins to try")
    parser.add_argument("--max-box-sides", type=float, nargs="+", default=DEFAULT_MAX_BOX_SIDES,
                        help="largest box sides (px) blend may move to try (inf: no limit)")
    parser.add_argument("--powers", type=float, nargs="+", default=DEFAULT_POWERS, help="score powers to try (0: detector's scores)")
    parser.add_argument("--precise-jitter", type=float, default=0.05,
                        help="also score every setting on the same images' GT jittered by this sigma (a precise detector) "
                             "and choose by the mean AP gain over both inputs; 0: the input boxes alone")
    parser.add_argument("--write", action="store_true", help="store the best setting in the refiner file (training split only)")


def main(args: argparse.Namespace) -> None:
    if args.write and args.split != "train":
        raise SystemExit("error: --write fits the calibration, so it needs --split train; judge it on --split val")
    env = environment(args.argv)
    ground_truth, image_ids, detector, backend = open_inputs(args)
    inputs = {describe_input(args): detector}
    if args.precise_jitter > 0 and args.jitter is None:
        # A real detector's training boxes alone barely tell settings apart (all within 0.1 AP); a
        # precise detector's boxes decide how far to trust small predicted gains.
        precise = argparse.Namespace(**{**vars(args), "jitter": args.precise_jitter, "detections": None, "detector": None})
        inputs[describe_input(precise)] = input_detector(precise, ground_truth, image_ids)
    try:
        if not backend.spec.predicts_iou:
            raise SystemExit(f"error: {args.refiner} does not predict its IoU; there is nothing to calibrate")
        spec = backend.spec
        boxes_of = {name: refine_all(ground_truth, args.images, image_ids, source, backend, flip_tta=False)
                    for name, source in inputs.items()}
    finally:
        backend.close()
    settings = [Calibration(t, m, p, max_box_side=side)
                for t in args.temperatures for m in args.margins for p in args.powers for side in args.max_box_sides]

    def ap_of(calibration: Calibration) -> dict[str, float]:
        return {name: coco_ap(ground_truth, outputs(boxes, calibration), image_ids)["AP"] for name, boxes in boxes_of.items()}

    baselines = ap_of(LEAVE_ALONE)
    grid = {setting: ap_of(setting) for setting in settings}
    # Leaving every box alone is always a candidate, so a refiner that cannot help these boxes is
    # told so and written that way. Ties go to the simpler setting: larger margin, smaller power,
    # no or a larger size limit.
    candidates = {LEAVE_ALONE: baselines, **grid}
    gains = {setting: float(np.mean([ap[name] - baselines[name] for name in inputs])) for setting, ap in candidates.items()}
    chosen = max(candidates, key=lambda s: (round(gains[s], 5), s.gain_margin, -s.score_power, s.max_box_side))
    main_input = describe_input(args)
    boxes = boxes_of[main_input]
    results: dict[str, Any] = {
        "images": len(image_ids), "split": args.split, "input": main_input, "refiner": str(args.refiner),
        "inputs": list(inputs), "baselines": baselines,
        "boxes": len(boxes["scores"]), "baseline_ap": baselines[main_input],
        "grid": [{**setting.__dict__, "ap": ap[main_input], "ap_by_input": ap, "mean_gain": gains[setting]}
                 for setting, ap in grid.items()],
        "best": {**chosen.__dict__, "ap": candidates[chosen][main_input], "ap_by_input": candidates[chosen], "mean_gain": gains[chosen]},
        "refining_pays": gains[chosen] > 0,
        "current": Calibration.of(spec).__dict__,
        "current_ap": coco_ap(ground_truth, outputs(boxes, Calibration.of(spec)), image_ids)["AP"],
        "reliability": reliability(boxes),
    }
    if args.write:
        calibration = replace(chosen, fitted_on=f"{' + '.join(inputs)} on {args.annotations.name}, {args.split} split, "
                                                f"{len(image_ids)} images")
        replace_spec(args.refiner, spec.__class__(**{**spec.__dict__, "extra": {**spec.extra, **calibration.as_extra()}}))
        results["written"] = calibration.__dict__
    write_report(args.out, f"Calibration on real boxes: {describe_input(args)}", env, results, calibration_markdown(results))
    print(verdict(results), file=sys.stderr)


def verdict(results: dict[str, Any]) -> str:
    """One line a user can act on: does refining pay on these boxes, and what the file now does."""
    best, stored = results["best"], ("written to the refiner file" if "written" in results else "not written (--write)")
    if not results["refining_pays"]:
        return (f"refining does not pay on these boxes: no setting beat leaving them alone; "
                f"the blend and gate policies leave every box alone ({stored})")
    return (f"refining pays on these boxes: {100 * best['mean_gain']:+.2f} AP (mean over the inputs) with blend temperature "
            f"{best['blend_temperature']:g}, margin {best['gain_margin']:g}, max box side {best['max_box_side']:g} px ({stored})")


def outputs(boxes: dict[str, np.ndarray], calibration: Calibration) -> list[dict]:
    """COCO results the pipeline would write with the blend policy under this calibration."""
    outputs = np.concatenate([boxes["refined"], boxes["predicted"]], axis=1)  # boxes stand in for the window coordinates
    weight = refined_weight(outputs, "blend", calibration, longer_sides(boxes["input"]))
    mixed = boxes["input"] + weight[:, None] * (boxes["refined"] - boxes["input"])
    scores = rescored(boxes["scores"], outputs, weight, calibration.score_power)
    entries: list[dict] = []
    for image_id in np.unique(boxes["image_id"]):
        rows = boxes["image_id"] == image_id
        entries += coco_results(int(image_id), mixed[rows], scores[rows], boxes["categories"][rows])
    return entries


def reliability(boxes: dict[str, np.ndarray]) -> dict[str, list[dict]]:
    """Predicted vs real IoU gain per bin of predicted gain; predicted vs real input IoU per bin;
    predicted vs real gain per bin of the input box's longer side."""
    predicted_gain = boxes["predicted"][:, 1] - boxes["predicted"][:, 0]
    real_gain = boxes["iou_refined"] - boxes["iou_input"]

    def table(binned: np.ndarray, real: np.ndarray, edges: tuple[float, ...], predicted: np.ndarray | None = None) -> list[dict]:
        """Rows per bin of `binned`; `predicted` (default: `binned` itself) is averaged beside `real`."""
        predicted = binned if predicted is None else predicted
        rows = []
        for low, high in zip(edges[:-1], edges[1:]):
            inside = (binned >= low) & (binned < high) if high < edges[-1] else (binned >= low)
            if inside.any():
                rows.append({"bin": [low, high], "boxes": int(inside.sum()), "predicted": float(predicted[inside].mean()),
                             "real": float(real[inside].mean()), "real_positive_share": float((real[inside] > 0).mean())})
        return rows

    return {"gain": table(predicted_gain, real_gain, GAIN_BINS),
            "input_iou": table(boxes["predicted"][:, 0], boxes["iou_input"], IOU_BINS),
            "box_side": table(longer_sides(boxes["input"]), real_gain, SIDE_BINS, predicted_gain)}


def calibration_markdown(results: dict[str, Any]) -> str:
    ordered = sorted(results["grid"], key=lambda r: (r["blend_temperature"], r["gain_margin"], r["max_box_side"], r["score_power"]))
    grid = [[f"T {r['blend_temperature']:g}, margin {r['gain_margin']:g}, max side {r['max_box_side']:g}, power {r['score_power']:g}",
             *(f"{100 * r['ap_by_input'][name]:.2f}" for name in results["inputs"]), f"{100 * r['mean_gain']:+.2f}"] for r in ordered]
    baselines = ["boxes left alone", *(f"{100 * results['baselines'][name]:.2f}" for name in results["inputs"]), "+0.00"]
    best = results["best"]
    gain = [[f"{row['bin'][0]:+.2f} .. {row['bin'][1]:+.2f}", row["boxes"], f"{row['predicted']:+.3f}", f"{row['real']:+.3f}",
             f"{100 * row['real_positive_share']:.0f}%"] for row in results["reliability"]["gain"]]
    iou = [[f"{row['bin'][0]:.1f} .. {row['bin'][1]:.1f}", row["boxes"], f"{row['predicted']:.3f}", f"{row['real']:.3f}"]
           for row in results["reliability"]["input_iou"]]
    side = [[f"{row['bin'][0]:g} .. {row['bin'][1]:g}", row["boxes"], f"{row['predicted']:+.3f}", f"{row['real']:+.3f}",
             f"{100 * row['real_positive_share']:.0f}%"] for row in results["reliability"]["box_side"]]
    written = f"\n\nWritten to the refiner file: {results['written']}" if "written" in results else ""
    return (
        f"**{verdict(results)}.**\n\n"
        f"{results['images']} images ({results['split']} split), {results['boxes']} boxes, refiner `{results['refiner']}`. "
        f"Detector's boxes and scores: AP {100 * results['baseline_ap']:.1f}; with the model's current calibration "
        f"{100 * results['current_ap']:.1f}. Best: blend temperature {best['blend_temperature']:g}, gain margin {best['gain_margin']:g}, "
        f"max box side {best['max_box_side']:g} px, score power {best['score_power']:g}, AP {100 * best['ap']:.1f} "
        f"({100 * (best['ap'] - results['baseline_ap']):+.1f}; mean gain over the inputs {100 * best['mean_gain']:+.2f}).{written}\n\n"
        "AP % of the pipeline's output (blend policy) per blend temperature, gain margin, largest box side moved and score "
        "power (0 = detector's scores), on each input, and the mean gain that chooses (margin 1 = boxes left alone):\n\n"
        + markdown_table(["setting", *results["inputs"], "mean gain"], [baselines, *grid])
        + "\n\nReliability of the predicted gain (refined minus input IoU):\n\n"
        + markdown_table(["predicted gain", "boxes", "mean predicted", "mean real", "real gain > 0"], gain)
        + "\n\nReliability of the predicted IoU of the detector's box:\n\n"
        + markdown_table(["predicted input IoU", "boxes", "mean predicted", "mean real"], iou)
        + "\n\nReal gain (refined minus input IoU) by the longer side of the detector's box (px):\n\n"
        + markdown_table(["longer side px", "boxes", "mean predicted gain", "mean real gain", "real gain > 0"], side) + "\n"
    )
