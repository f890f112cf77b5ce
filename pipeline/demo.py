"""`python -m pipeline --source demo`: the whole product on a generated clip, scored against exact GT.

It writes a short clip of moving, overlapping objects (pipeline.synthetic), runs the committed
demo detector and the committed synthetic-scene refiner through the real threaded pipeline, then
scores the detector's boxes and the refined boxes with COCO AP against the clip's ground truth.
Like any run, it uses the refiner's default policy (blend, for refiners with an IoU head) unless --policy says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.evaluation import AP_KEYS, coco_ap, load_ground_truth, xyxy_to_xywh
from pipeline.run import RunConfig, UsageError, choose_output_dir, run
from pipeline.synthetic import write_clip

ENGINES = Path(__file__).resolve().parents[1] / "engines"
DEMO_DETECTOR = ENGINES / "demo-detector-yolov8n.pt"
DEMO_REFINER = ENGINES / "refiner-synthetic-mobilenetv3_small_100-128.safetensors"
DEMO_FRAMES, DEMO_SIZE, DEMO_SEED = 90, (960, 540), 2024
DEMO_IMGSZ, DEMO_CONF = 320, 0.1  # the detector was trained at 320 px; a low threshold keeps weak boxes to refine


def run_demo(args: argparse.Namespace) -> int:
    detector = args.detector or DEMO_DETECTOR
    refiner = args.refiner or DEMO_REFINER
    for path, what in ((detector, "detector"), (refiner, "refiner")):
        if not Path(path).is_file():
            raise UsageError(f"demo {what} {path} is missing; restore it with git checkout or pass --{what}")
    output = choose_output_dir(args.output)
    frames = args.max_frames or DEMO_FRAMES
    clip = output / "demo-clip.mp4"
    ground_truth_path = write_clip(clip, frames, *DEMO_SIZE, seed=DEMO_SEED)
    config = RunConfig(
        source=str(clip), detector=Path(detector), refiner=Path(refiner), backend=args.backend, device=args.device,
        output=output / "run", min_size=args.min_size, workers=args.workers, policy=args.policy,
        imgsz=args.imgsz or DEMO_IMGSZ, conf=DEMO_CONF if args.conf is None else args.conf, show=args.show,
    )
    report = run(config)
    if report.exit_code:
        print(f"error: {report.summary.get('error')}; finished frames are in {report.output_dir}", file=sys.stderr)
        return report.exit_code
    scores = score_run(ground_truth_path, report.output_dir / "detections.jsonl")
    (output / "demo-scores.json").write_text(json.dumps(scores, indent=2))
    print(format_scores(scores, report.summary))
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
    lines.append(f"FPS {summary.get('fps', 0):.1f}; per-stage latency p50/p95 ms:")
    for stage, values in summary.get("latency_ms", {}).items():
        lines.append(f"  {stage:<12} {values.get('p50_ms') or 0:8.2f} {values.get('p95_ms') or 0:8.2f}")
    return "\n".join(lines)
