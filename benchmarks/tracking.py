"""Tracking (--track) measured: ids with and without refinement, boxes that hold still, refinement reused.

Each sequence goes through pipeline variants side by side, frame by frame in ONE loop, so their
timings share the machine's load: the detector's boxes as they are ("detector"), refined
("refined"), and refined with reuse along tracks ("refined+reuse"). Every variant's boxes feed one
ByteTrack per sequence (pipeline.track); every output is scored as is and smoothed along its
tracks (an EMA, and an alpha-beta filter that also follows velocity).

- MOTA, IDF1, ID switches (py-motmetrics, IoU >= 0.5) of the tracked boxes;
- jitter: mean |frame-to-frame change| of the sides of boxes on objects whose true box does not move;
- COCO AP of all output boxes, and on moving objects only (standing ones are crowd regions);
- the refine step's time per frame (plan, crop, network) and crops per frame, with and without reuse.

Generated clips: standing, slow and moving objects crossing each other, exact ids; their boxes are
the truth jittered per frame (see benchmarks.tracking_data). mot17-mini: 4 real sequences of only
4-7 frames each, with the detections shipped with them. "crowd": mot17-mini's sequences 02 and 11
with YOLOv8n's person boxes at confidence 0.05 (far more boxes per frame), each played forward and
back to --crowd-frames frames, as `python -m benchmarks crowd` builds its clip.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import environment, markdown_table, write_report
from benchmarks.tracking_data import ClipSettings, TrackedSequence, mot17_sequences, synthetic_sequence
from benchmarks.tracking_metrics import OutputFrame, coco_scores, mot_scores, standing_jitter, supervision_ids
from pipeline.backends import KINDS
from pipeline.core.types import Frame, RefinedDetections, RefineStatus
from pipeline.data.synthetic import parse_size
from pipeline.refine.refiner import FrameRefiner, build_frame_refiner
from pipeline.track.reuse import ReuseSettings
from pipeline.track.smoothing import BoxSmoother, SmoothingSettings
from pipeline.track.stream import StreamTracks, TrackOptions

ENGINES = Path(__file__).resolve().parent.parent / "engines"
VARIANTS = ("detector", "refined", "refined+reuse")
DATASETS = ("synthetic", "mot17-mini", "crowd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one generated clip per seed")
    parser.add_argument("--frames", type=int, default=90, help="frames per generated clip")
    parser.add_argument("--size", type=parse_size, default=(640, 480), help="WIDTHxHEIGHT of the generated clips")
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--sigma", type=float, default=0.05, help="per-frame jitter of the generated clips' boxes")
    parser.add_argument("--synthetic-refiner", type=Path,
                        default=ENGINES / "refiner-synthetic-mobilenetv3_small_100-128.safetensors")
    parser.add_argument("--mot17", type=Path, default=Path("../shared/data/mot17-mini"))
    parser.add_argument("--person-refiner", type=Path, default=ENGINES / "refiner-person-lite0-160-edges.safetensors")
    parser.add_argument("--crowd-detector", type=Path, default=Path("models/yolov8n-coco.pt"))
    parser.add_argument("--crowd-frames", type=int, default=24, help="frames per crowd sequence (played forward and back)")
    parser.add_argument("--backend", choices=KINDS, default="onnxruntime")
    parser.add_argument("--ema", type=float, default=0.5, help="alpha of the EMA smoothing")
    parser.add_argument("--alpha-beta", type=float, nargs=2, default=(0.5, 0.1), metavar=("ALPHA", "BETA"))
    parser.add_argument("--snap", type=float, default=0.05, help="alpha-beta+snap: restart where a side moved this x box size")
    parser.add_argument("--reuse-iou", type=float, default=ReuseSettings.min_iou)
    parser.add_argument("--reuse-shift", type=float, default=ReuseSettings.max_shift)
    parser.add_argument("--reuse-max-age", type=int, default=ReuseSettings.max_age)
    parser.add_argument("--out", type=Path, default=None, help="report JSON (a .md is written beside it)")


@dataclass
class VariantRun:
    """One variant's state over a sequence: its tracks, extra smoothers, outputs and time."""

    tracks: StreamTracks
    smoothers: dict[str, BoxSmoother | None]
    outputs: dict[str, list[OutputFrame]]
    refine_seconds: float = 0.0
    track_seconds: float = 0.0
    crops: int = 0


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    smoothing = {"none": None, "ema": SmoothingSettings(args.ema, 0.0), "alpha-beta": SmoothingSettings(*args.alpha_beta),
                 "alpha-beta+snap": SmoothingSettings(*args.alpha_beta, snap=args.snap)}
    reuse = ReuseSettings(args.reuse_iou, args.reuse_shift, args.reuse_max_age)
    clip = ClipSettings(args.frames, args.size, args.objects, sigma=args.sigma)
    datasets: dict[str, tuple[list[TrackedSequence], Path]] = {}
    if "synthetic" in args.datasets:
        datasets["synthetic"] = ([synthetic_sequence(seed, clip) for seed in args.seeds], args.synthetic_refiner)
    if not (args.mot17 / "annotations").is_dir():
        print(f"{args.mot17} not found: mot17-mini and the crowd clip left out")
    elif "mot17-mini" in args.datasets:
        datasets["mot17-mini"] = (mot17_sequences(args.mot17), args.person_refiner)
    if (args.mot17 / "annotations").is_dir() and "crowd" in args.datasets:
        from pipeline.io.detectors import open_detector

        crowd_detector = open_detector(args.crowd_detector, conf=0.05, device="cpu")
        crowd = mot17_sequences(args.mot17, ("-02-", "-11-"), crowd_detector, args.crowd_frames)
        datasets["crowd"] = (crowd, args.person_refiner)
    results = {name: score_dataset(sequences, refiner, args.backend, smoothing, reuse)
               for name, (sequences, refiner) in datasets.items()}
    settings = {"clips": vars(clip) | {"seeds": args.seeds}, "smoothing": {k: v and vars(v) for k, v in smoothing.items()},
                "reuse": vars(reuse)}
    write_report(args.out, "Tracking: ids, still boxes, reuse", env, {"settings": settings, "datasets": results},
                 tracking_markdown(results))


def score_dataset(
    sequences: list[TrackedSequence], refiner_path: Path, backend: str,
    smoothing: dict[str, SmoothingSettings | None], reuse: ReuseSettings,
) -> dict[str, Any]:
    """Every variant x smoothing on every sequence of one dataset: MOT scores, jitter, AP, time."""
    refiner = build_frame_refiner(refiner_path, sequences[0].class_names, backend=backend, workers=1)
    runs_by_sequence = {sequence.name: run_sequence(sequence, refiner, smoothing, reuse) for sequence in sequences}
    refiner.cropper.close()
    frames = sum(len(sequence.images) for sequence in sequences)
    scores: dict[str, Any] = {"sequences": {s.name: len(s.images) for s in sequences}, "frames": frames, "variants": {}}
    for variant in VARIANTS:
        runs = [runs_by_sequence[sequence.name][variant] for sequence in sequences]
        entry: dict[str, Any] = {
            "refine_ms_per_frame": round(1000 * sum(run.refine_seconds for run in runs) / frames, 2),
            "track_ms_per_frame": round(1000 * sum(run.track_seconds for run in runs) / frames, 2),
            "crops_per_frame": round(sum(run.crops for run in runs) / frames, 2),
            "smoothing": {},
        }
        for name in smoothing:
            pairs = {s.name: (s.truth, runs_by_sequence[s.name][variant].outputs[name]) for s in sequences}
            truth = [frame for s in sequences for frame in s.truth]
            outputs = [frame for s in sequences for frame in runs_by_sequence[s.name][variant].outputs[name]]
            jitter = [change for t, o in pairs.values() for change in standing_jitter(t, o)]
            mot = mot_scores(pairs)
            entry["smoothing"][name] = {
                **{key: round(value, 4) for key, value in coco_scores(truth, outputs, sequences[0].class_names).items()},
                "standing_jitter_px": round(float(np.mean(jitter)), 3) if jitter else None,
                "standing_pairs": len(jitter),
                "mot": mot.get("OVERALL", next(iter(mot.values()))),
                "mot_by_sequence": mot,
            }
        scores["variants"][variant] = entry
    scores["supervision_bytetrack"] = supervision_comparison(sequences, runs_by_sequence, frames)
    return scores


def supervision_comparison(
    sequences: list[TrackedSequence], runs_by_sequence: dict[str, dict[str, VariantRun]], frames: int
) -> dict[str, Any]:
    """supervision's ByteTrack on the refined boxes, for the choice of tracker (ours: Ultralytics')."""
    pairs, seconds = {}, 0.0
    for sequence in sequences:
        outputs, spent = supervision_ids(runs_by_sequence[sequence.name]["refined"].outputs["none"])
        pairs[sequence.name] = (sequence.truth, outputs)
        seconds += spent
    mot = mot_scores(pairs)
    return {"mot": mot.get("OVERALL", next(iter(mot.values()))), "track_ms_per_frame": round(1000 * seconds / frames, 2)}


def run_sequence(
    sequence: TrackedSequence, refiner: FrameRefiner, smoothing: dict[str, SmoothingSettings | None], reuse: ReuseSettings
) -> dict[str, VariantRun]:
    """The variants side by side, frame by frame, each with its own tracker (ids per sequence)."""
    runs = {
        variant: VariantRun(
            StreamTracks(TrackOptions(reuse=reuse if variant == "refined+reuse" else None)),
            {name: BoxSmoother(settings) if settings else None for name, settings in smoothing.items()},
            defaultdict(list),
        )
        for variant in VARIANTS
    }
    for index, (image, detections) in enumerate(zip(sequence.images, sequence.detections, strict=True)):
        frame = Frame(index, image, None, f"{sequence.name}#{index}")
        for variant, run in runs.items():
            started = time.perf_counter()
            plan = run.tracks.plan(detections)
            if variant == "detector":
                result = RefinedDetections.untouched(detections, RefineStatus.DISABLED)
            else:
                job = refiner.prepare(frame, detections, only=None if plan is None else plan.refine)
                run.crops += len(job.selected)
                result = refiner.finish(job)
            tracked_at = time.perf_counter()
            result, tracks = run.tracks.finish(index, plan, result)
            run.refine_seconds += tracked_at - started
            run.track_seconds += time.perf_counter() - tracked_at
            for name, smoother in run.smoothers.items():
                boxes = tracks.boxes if smoother is None else smoother.smooth(index, tracks.ids, tracks.boxes)
                run.outputs[name].append(OutputFrame(boxes, result.scores, detections.class_ids, tracks.ids))
    return runs


def tracking_markdown(results: dict[str, Any]) -> str:
    header = ["dataset", "boxes", "smoothing", "MOTA", "IDF1", "ID sw.", "AP", "AP moving", "standing jitter px",
              "refine ms/frame", "crops/frame"]
    rows = []
    for dataset, scores in results.items():
        for variant, entry in scores["variants"].items():
            for name, score in entry["smoothing"].items():
                mot = score["mot"]
                rows.append([dataset, variant, name, mot["mota"], mot["idf1"], int(mot["num_switches"]),
                             score["AP"], score["AP_moving"], score["standing_jitter_px"],
                             entry["refine_ms_per_frame"], entry["crops_per_frame"]])
    header_choice = ["dataset", "tracker (refined boxes)", "MOTA", "IDF1", "ID sw.", "track ms/frame"]
    choice = []
    for dataset, scores in results.items():
        ours, theirs = scores["variants"]["refined"], scores["supervision_bytetrack"]
        for name, mot, ms in (("Ultralytics BYTETracker", ours["smoothing"]["none"]["mot"], ours["track_ms_per_frame"]),
                              ("supervision ByteTrack", theirs["mot"], theirs["track_ms_per_frame"])):
            choice.append([dataset, name, mot["mota"], mot["idf1"], int(mot["num_switches"]), ms])
    frames = "; ".join(f"{dataset}: {scores['frames']} frames in {len(scores['sequences'])} sequences"
                       for dataset, scores in results.items())
    return (f"{frames}.\n\n" + markdown_table(header, rows)
            + "\n\nrefine ms/frame: plan, crop and network of the refine step (the detector's time is not in it); "
              "measured side by side in one loop, so the variants share the machine's load.\n\n"
            + "Tracker choice, on the same refined boxes:\n\n" + markdown_table(header_choice, choice) + "\n")
