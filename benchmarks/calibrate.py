"""Calibrate a refiner on a real detector's boxes: one profile's policy constants and gate, and a reliability table.

One refiner pass over the detector's boxes of the chosen split, then, for every blend temperature,
gain margin, largest box side to refine and score power on a grid, the COCO AP of the boxes and
scores the pipeline would output. Run on the training split with --write, the best setting is
stored in the refiner file's spec, so the pipeline uses it wherever the file goes; held-out images
are for judging it, not for fitting. Leaving every box alone is always a candidate: where no setting
beats it, that is what is written, the report's first line says refining does not pay on these
boxes, and a pipeline run with the file warns.

Then the gate before the network: a least-squares fit (pipeline.refine.gate.fit_gate) of each
candidate box's real IoU gain under the chosen setting from what is known before cropping, and a
threshold on its expected gain chosen by AP: every share of boxes refined on a grid is scored, and
the smallest share within --gate-tolerance of the best AP is kept (fewer crops for the same AP).
Profiles are per detector (--profile NAME: "yolov8n" for YOLOv8n's boxes, "generic" for detectors
nobody calibrated, e.g. jittered ground truth); --write stores the profile in the refiner file.

The reliability table says whether the IoU head knows when to act: per bin of predicted IoU gain
(refined minus input), how many boxes fall there and the gain they really got; per bin of
predicted input IoU, the real IoU of the detector's box; per bin of box size, the gain boxes of
that size really got (the evidence for max_box_side).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from benchmarks.accuracy import add_input_arguments, describe_input, input_detector, open_inputs
from benchmarks.coco_eval import coco_results
from benchmarks.mixing import best_truth, refine_all
from benchmarks.report import environment, markdown_table, write_report
from pipeline.core.calibration import GATE_FEATURES, Calibration, GateModel
from pipeline.core.geometry import longer_sides
from pipeline.data.coco import coco_ap
from pipeline.model.checkpoint import replace_spec
from pipeline.refine.gate import expected_gain, fit_gate, gate_features
from pipeline.refine.policy import refined_weight, rescored

DEFAULT_TEMPERATURES = (0.01, 0.02, 0.05, 0.1)
# 1.0: no predicted gain clears it, every box stays; a negative margin trusts the refiner beyond its
# own predicted gain (its IoU head under-predicts the gain on poor boxes).
DEFAULT_MARGINS = (-0.05, -0.02, 0.0, 0.02, 0.05, 0.1, 1.0)
DEFAULT_GATE_SHARES = (1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
DEFAULT_GATE_TOLERANCE = 0.0005  # AP (0.05 points): a smaller share of boxes refined within this of the best AP wins
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
    parser.add_argument("--precise-jitter", type=float, nargs="+", default=(0.05,),
                        help="also score every setting on the same images' GT jittered by each sigma (a precise detector) "
                             "and choose by the mean AP gain over all inputs (the generic profile: a real detector's boxes "
                             "beside sigma 0.05 and 0.1); 0: the input boxes alone")
    parser.add_argument("--profile", default=None,
                        help="the detector profile to fit and write (default: the input's, as a run picks it: a YOLOv8n "
                             "model -> yolov8n; detection files and jitter -> generic)")
    parser.add_argument("--gate-shares", type=float, nargs="+", default=DEFAULT_GATE_SHARES,
                        help="shares of the candidate boxes the gate lets through to try (by expected gain)")
    parser.add_argument("--gate-tolerance", type=float, default=DEFAULT_GATE_TOLERANCE,
                        help="AP (0..1) a smaller share may lose against the best one and still be chosen")
    parser.add_argument("--write", action="store_true", help="store the best setting in the refiner file (training split only)")


def main(args: argparse.Namespace) -> None:
    if args.write and args.split != "train":
        raise SystemExit("error: --write fits the calibration, so it needs --split train; judge it on --split val")
    env = environment(args.argv)
    ground_truth, image_ids, detector, backend = open_inputs(args)
    profile = args.profile or detector.profile
    inputs = {describe_input(args): detector}
    for sigma in args.precise_jitter:
        # A real detector's training boxes alone barely tell settings apart (all within 0.1 AP); a
        # precise detector's boxes decide how far to trust small predicted gains.
        if sigma > 0 and sigma != args.jitter:
            precise = argparse.Namespace(**{**vars(args), "jitter": sigma, "detections": None, "detector": None})
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
    current = spec.profiles.get(profile, Calibration())
    gate, curve, gate_row = choose_gate(ground_truth, image_ids, boxes_of, chosen, baselines, args.gate_shares, args.gate_tolerance)
    results: dict[str, Any] = {
        "images": len(image_ids), "split": args.split, "input": main_input, "refiner": str(args.refiner),
        "profile": profile, "inputs": list(inputs), "baselines": baselines,
        "boxes": len(boxes["scores"]), "baseline_ap": baselines[main_input],
        "grid": [{**setting_fields(setting), "ap": ap[main_input], "ap_by_input": ap, "mean_gain": gains[setting]}
                 for setting, ap in grid.items()],
        "best": {**setting_fields(chosen), "ap": candidates[chosen][main_input], "ap_by_input": candidates[chosen], "mean_gain": gains[chosen]},
        "refining_pays": gains[chosen] > 0,
        "gate": asdict(gate), "gate_features": GATE_FEATURES, "gate_curve": curve, "gate_chosen": gate_row,
        "current": setting_fields(current),
        "current_ap": coco_ap(ground_truth, outputs(boxes, current), image_ids)["AP"],
        "reliability": reliability(boxes),
    }
    if args.write:
        calibration = replace(chosen, gate=gate, fitted_on=f"{' + '.join(inputs)} on {args.annotations.name}, {args.split} split, "
                                                           f"{len(image_ids)} images")
        replace_spec(args.refiner, replace(spec, profiles={**spec.profiles, profile: calibration}))
        results["written"] = {"profile": profile, **asdict(calibration)}
    write_report(args.out, f"Calibration on real boxes: {describe_input(args)}", env, results, calibration_markdown(results))
    print(verdict(results), file=sys.stderr)


def verdict(results: dict[str, Any]) -> str:
    """One line a user can act on: does refining pay on these boxes, and what the file now does."""
    best, stored = results["best"], ("written to the refiner file" if "written" in results else "not written (--write)")
    if not results["refining_pays"]:
        return (f"refining does not pay on these boxes: no setting beat leaving them alone; "
                f"the blend and gate policies leave every box alone ({stored})")
    gate = results["gate_chosen"]
    return (f"refining pays on these boxes: {100 * best['mean_gain']:+.2f} AP (mean over the inputs) with blend temperature "
            f"{best['blend_temperature']:g}, margin {best['gain_margin']:g}, max box side {best['max_box_side']:g} px; the gate "
            f"refines {100 * gate['share_refined']:.0f}% of the boxes for {100 * gate['mean_gain']:+.2f} AP "
            f"(profile {results['profile']}, {stored})")


def setting_fields(calibration: Calibration) -> dict[str, Any]:
    """A setting's policy constants (its gate is reported apart)."""
    return {key: value for key, value in asdict(calibration).items() if key != "gate"}


def blended(boxes: dict[str, np.ndarray], calibration: Calibration, refine: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores the pipeline would output with the blend policy under this calibration;
    `refine`: mask of the boxes the gate lets through (the others stay as the detector made them)."""
    outputs = np.concatenate([boxes["refined"], boxes["predicted"]], axis=1)  # boxes stand in for the window coordinates
    weight = refined_weight(outputs, "blend", calibration, longer_sides(boxes["input"]))
    if refine is not None:
        weight = np.where(refine, weight, 0.0)
    mixed = boxes["input"] + weight[:, None] * (boxes["refined"] - boxes["input"])
    return mixed, rescored(boxes["scores"], outputs, weight, calibration.score_power)


def outputs(boxes: dict[str, np.ndarray], calibration: Calibration, refine: np.ndarray | None = None) -> list[dict]:
    """COCO results the pipeline would write with the blend policy under this calibration (and gate mask)."""
    mixed, scores = blended(boxes, calibration, refine)
    entries: list[dict] = []
    for image_id in np.unique(boxes["image_id"]):
        rows = boxes["image_id"] == image_id
        entries += coco_results(int(image_id), mixed[rows], scores[rows], boxes["categories"][rows])
    return entries


def box_features(boxes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Longer sides and gate features of every row, as the pipeline computes them before cropping."""
    return longer_sides(boxes["input"]), gate_features(boxes["input"], boxes["scores"], boxes["frame_size"], boxes["boxes_in_frame"])


def choose_gate(ground_truth: Any, image_ids: list[int], boxes_of: dict[str, dict[str, np.ndarray]], chosen: Calibration,
                baselines: dict[str, float], shares: tuple[float, ...], tolerance: float) -> tuple[GateModel, list[dict], dict]:
    """Fit the gate on every input's candidate boxes (target: real IoU gain of the blended box under
    `chosen`), then score each share of boxes let through by AP; keep the smallest share within
    `tolerance` of the best mean AP gain. Returns the gate with its threshold, the curve and the chosen row."""
    gains, expected_inputs = {}, {}
    for name, boxes in boxes_of.items():
        mixed, _ = blended(boxes, chosen)
        gains[name] = best_truth(ground_truth, boxes["image_id"], mixed)[0] - boxes["iou_input"]
    pooled = {key: np.concatenate([boxes[key][boxes["candidate"]] for boxes in boxes_of.values()])
              for key in ("input", "scores", "frame_size", "boxes_in_frame", "refiner_class")}
    sides, features = box_features(pooled)
    target = np.concatenate([gains[name][boxes["candidate"]] for name, boxes in boxes_of.items()])
    gate = fit_gate(sides, features, list(pooled["refiner_class"]), target)
    for name, boxes in boxes_of.items():  # as the pipeline skips them: boxes above max_box_side never move under blend
        never = ~boxes["candidate"] | (longer_sides(boxes["input"]) > chosen.max_box_side)
        expected_inputs[name] = np.where(never, -np.inf, expected_gain(gate, *box_features(boxes), list(boxes["refiner_class"])))
    expected = np.where(sides > chosen.max_box_side, -np.inf, expected_gain(gate, sides, features, list(pooled["refiner_class"])))
    # "higher": a sample of the expected gains (no interpolation towards the -inf of boxes that never move)
    thresholds = {-math.inf, 0.0, math.inf, *(float(np.quantile(expected, 1 - share, method="higher")) for share in shares if 0 < share < 1)}
    curve = []
    for threshold in sorted(thresholds):
        passes = {name: expected_inputs[name] > threshold for name in boxes_of}
        ap = {name: coco_ap(ground_truth, outputs(boxes, chosen, passes[name]), image_ids)["AP"] for name, boxes in boxes_of.items()}
        share = float((expected > threshold).mean()) if len(expected) else 0.0
        curve.append({"threshold": threshold, "share_refined": share,
                      "share_by_input": {name: float(passes[name][boxes["candidate"]].mean()) if boxes["candidate"].any() else 0.0
                                         for name, boxes in boxes_of.items()},
                      "ap_by_input": ap, "mean_gain": float(np.mean([ap[name] - baselines[name] for name in boxes_of]))})
    best = max(row["mean_gain"] for row in curve)
    row = min((row for row in curve if row["mean_gain"] >= best - tolerance), key=lambda r: (r["share_refined"], -r["mean_gain"], -r["threshold"]))
    return replace(gate, threshold=row["threshold"]), curve, row


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
    curve = [[f"{row['threshold']:+.4f}", f"{100 * row['share_refined']:.1f}%",
              *(f"{100 * row['share_by_input'][name]:.1f}% / {100 * row['ap_by_input'][name]:.2f}" for name in results["inputs"]),
              f"{100 * row['mean_gain']:+.2f}" + (" (chosen)" if row == results["gate_chosen"] else "")] for row in results["gate_curve"]]
    gate = results["gate"]
    sides = [[f"{low:g} .. {high:g}", f"{gain:+.4f}"] for low, high, gain in zip(gate["side_edges"], gate["side_edges"][1:], gate["side_gain"])]
    slopes = [[name, f"{slope:+.5f}", f"{centre:.3f}"] for name, slope, centre in zip(results["gate_features"], gate["slopes"], gate["centres"])]
    slopes += [[f"class {name}", f"{gain:+.5f}", ""] for name, gain in gate["class_gain"]]
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
        + f"\n\nGate before the network (profile `{results['profile']}`): expected IoU gain fitted on {gate['boxes']} candidate "
        "boxes; per threshold, the share of boxes refined (pooled), per input the share refined / AP %, and the mean AP gain "
        "over the inputs (the smallest share within the tolerance of the best is chosen):\n\n"
        + markdown_table(["threshold", "share refined", *results["inputs"], "mean gain"], curve)
        + "\n\nThe gate's model: expected gain of a typical box per longer side (px), and per feature the slope (gain per "
        "unit, about the calibration boxes' mean):\n\n"
        + markdown_table(["longer side px", "expected gain"], sides) + "\n\n"
        + markdown_table(["feature", "slope", "mean"], slopes)
        + "\n\nReliability of the predicted gain (refined minus input IoU):\n\n"
        + markdown_table(["predicted gain", "boxes", "mean predicted", "mean real", "real gain > 0"], gain)
        + "\n\nReliability of the predicted IoU of the detector's box:\n\n"
        + markdown_table(["predicted input IoU", "boxes", "mean predicted", "mean real"], iou)
        + "\n\nReal gain (refined minus input IoU) by the longer side of the detector's box (px):\n\n"
        + markdown_table(["longer side px", "boxes", "mean predicted gain", "mean real gain", "real gain > 0"], side) + "\n"
    )
