"""`python -m pipeline --source demo`: the product on real footage; `--source synthetic`: scored against exact GT.

demo: the bundled CC BY clip (assets/) through the committed COCO detector and person refiner
(pipeline.model.defaults), the same run any user gets; it prints FPS, latency and how much the refiner
moved boxes, and writes a contact sheet (the frames where boxes moved most, zoomed). The clip has
no ground truth, so it shows, it does not score.

synthetic: a generated clip of moving, overlapping objects (pipeline.data.synthetic), the committed
demo detector and the synthetic-scene refiner; scores detector and refined boxes with COCO AP.
Both take every run option of the CLI (a RunConfig made by pipeline.app.cli), with the demos' own
defaults (`DEFAULTS`) where an option is not given; the refiner's default policy is blend for
refiners with an IoU head.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from pipeline.app.contact_sheet import write_contact_sheet
from pipeline.app.outputs import choose_output_dir
from pipeline.app.run import RunConfig, run
from pipeline.app.summary import DETECTIONS_FILE, SUMMARY_FILE, VIDEO_FILE, format_run_summary
from pipeline.core.errors import UsageError
from pipeline.core.geometry import xyxy_to_xywh
from pipeline.data.coco import AP_KEYS, coco_ap, load_ground_truth
from pipeline.data.synthetic import write_clip
from pipeline.model.defaults import DEMO_VIDEO, ENGINES_DIR, in_checkout

SYNTHETIC_DETECTOR = ENGINES_DIR / "demo-detector-yolov8n.pt"
SYNTHETIC_REFINER = ENGINES_DIR / "refiner-synthetic-mobilenetv3_small_100-128.safetensors"
SYNTHETIC_FRAMES, SYNTHETIC_SIZE, SYNTHETIC_SEED = 90, (960, 540), 2024
SYNTHETIC_IMGSZ, SYNTHETIC_CONF = 320, 0.1  # the detector was trained at 320 px; a low threshold keeps weak boxes to refine
# 300 frames (30 s of the clip): people enter, walk through and leave, with a few objects the
# person refiner does not know; about a minute on a 2-core CPU.
DEMO_FRAMES = 300
CONTACT_SHEET_FILE = "contact-sheet.png"
SCORES_FILE = "demo-scores.json"
# Per demo source, the defaults that differ from RunConfig's; options the user gives win.
DEFAULTS: dict[str, dict[str, object]] = {
    "demo": {"max_frames": DEMO_FRAMES},
    "synthetic": {"detector": SYNTHETIC_DETECTOR, "refiner": SYNTHETIC_REFINER, "max_frames": SYNTHETIC_FRAMES,
                  "imgsz": SYNTHETIC_IMGSZ, "conf": SYNTHETIC_CONF},
}


def restore_hint() -> str:
    """The demos' clip and synthetic-scene models are in the repository only, not in an installed package."""
    return "restore it with git checkout" if in_checkout() else "the demos run from a checkout of the repository"


def run_demo(config: RunConfig) -> int:
    """`config.source` is "demo" or "synthetic"; every other field is the user's run option (or DEFAULTS)."""
    return run_synthetic_demo(config) if config.source == "synthetic" else run_real_demo(config)


def run_real_demo(config: RunConfig) -> int:
    """The bundled clip through the default (or given) detector and refiner; prints and draws what changed."""
    if not DEMO_VIDEO.is_file():
        raise UsageError(f"demo clip {DEMO_VIDEO} is missing; {restore_hint()}")
    report = run(replace(config, source=str(DEMO_VIDEO)))
    print(format_run_summary(report.summary))
    if report.exit_code:
        print(f"error: {report.summary.get('error')}; finished frames are in {report.output_dir}", file=sys.stderr)
        return report.exit_code
    sheet = write_contact_sheet(
        DEMO_VIDEO, report.output_dir / DETECTIONS_FILE, report.output_dir / CONTACT_SHEET_FILE,
        title=f"{DEMO_VIDEO.name}: frames where the refiner moved a box most",
    )
    print(f"outputs in {report.output_dir}/:")
    print(f"  {VIDEO_FILE:<18} every frame with detector boxes (orange, class and score) and refined boxes (green)")
    print(f"  {DETECTIONS_FILE:<18} one line per frame: both boxes, status and predicted IoUs per object")
    print(f"  {SUMMARY_FILE:<18} FPS, latency and queue occupancy per stage, models, counts")
    if sheet is not None:
        print(f"  {CONTACT_SHEET_FILE:<18} the frames where refined boxes moved most, zoomed in on them")
    else:
        print("  (no contact sheet: no box was refined)")
    return 0


def run_synthetic_demo(config: RunConfig) -> int:
    """A generated clip of `config.max_frames` frames, run and scored: COCO AP of detector and refined boxes."""
    for path, what in ((config.detector, "detector"), (config.refiner, "refiner")):
        if not Path(path).is_file():
            raise UsageError(f"demo {what} {path} is missing; {restore_hint()}, or pass --{what}")
    output = choose_output_dir(config.output)
    clip = output / "demo-clip.mp4"
    ground_truth_path = write_clip(clip, config.max_frames, *SYNTHETIC_SIZE, seed=SYNTHETIC_SEED)
    report = run(replace(config, source=str(clip), output=output / "run"))
    if report.exit_code:
        print(f"error: {report.summary.get('error')}; finished frames are in {report.output_dir}", file=sys.stderr)
        return report.exit_code
    scores = score_run(ground_truth_path, report.output_dir / DETECTIONS_FILE)
    (output / SCORES_FILE).write_text(json.dumps(scores, indent=2))
    print(format_scores(scores, report.summary))
    print(f"outputs in {output}/:")
    print(f"  {clip.name:<22} the generated clip; {ground_truth_path.name}: its exact boxes (COCO ground truth)")
    print(f"  {report.output_dir.name + '/':<22} the run on it: {DETECTIONS_FILE}, {VIDEO_FILE}, {SUMMARY_FILE}")
    print(f"  {SCORES_FILE:<22} COCO AP of the detector's boxes and of the refined boxes")
    return 0


def score_run(ground_truth_path: Path, detections_jsonl: Path) -> dict[str, dict[str, float]]:
    """COCO AP of the detector's boxes and of the pipeline's final boxes (refined where it refined)."""
    ground_truth = load_ground_truth(ground_truth_path)
    category = {c["name"]: c["id"] for c in ground_truth.dataset["categories"]}
    detector, refined = [], []
    for line in detections_jsonl.read_text().splitlines():
        frame = json.loads(line)
        for obj in frame["objects"]:
            if obj["class"] not in category:
                continue
            base = {"image_id": frame["frame"], "category_id": category[obj["class"]], "score": obj["score"]}
            detector.append({**base, "bbox": xyxy_to_xywh(obj["detector_box"])})
            refined.append({**base, "bbox": xyxy_to_xywh(obj["refined_box"] or obj["detector_box"])})
    image_ids = [image["id"] for image in ground_truth.dataset["images"]]
    return {"detector": coco_ap(ground_truth, detector, image_ids), "refined": coco_ap(ground_truth, refined, image_ids)}


def format_scores(scores: dict[str, dict[str, float]], summary: dict) -> str:
    lines = ["", f"{'boxes':<10}" + "".join(f"{key:>8}" for key in AP_KEYS)]
    for name, values in scores.items():
        lines.append(f"{name:<10}" + "".join(f"{values[key]:>8.3f}" for key in AP_KEYS))
    gain = scores["refined"]["AP"] - scores["detector"]["AP"]
    lines.append(f"refinement changes AP by {gain:+.3f}")
    lines.append(format_run_summary(summary))
    return "\n".join(lines)
