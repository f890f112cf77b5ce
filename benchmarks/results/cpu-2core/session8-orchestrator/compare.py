"""Compare two evidence.sh output folders: detections.jsonl bytes, summary keys, frames, objects, files, video lengths.

usage: python compare.py BEFORE_DIR AFTER_DIR  (prints JSON; every check should be true)
"""

import hashlib
import json
import sys
from pathlib import Path

import cv2

RUNS = ("synthetic/run", "one", "two", "norefine")


def keys(value: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, item in value.items():
        out.add(prefix + key)
        if isinstance(item, dict) and key not in ("spec", "class_mapping"):
            out |= keys(item, f"{prefix}{key}.")
        if isinstance(item, list) and item and isinstance(item[0], dict):
            out |= keys(item[0], f"{prefix}{key}[].")
    return out


def frames(video: Path) -> int:
    capture = cv2.VideoCapture(str(video))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count


def compare(before: Path, after: Path) -> dict:
    result = {}
    for run in RUNS:
        b, a = before / run, after / run
        sb, sa = (json.loads((d / "summary.json").read_text()) for d in (b, a))
        files = sorted(p.name for p in b.iterdir())
        result[run] = {
            "detections_jsonl_sha256": hashlib.sha256((a / "detections.jsonl").read_bytes()).hexdigest(),
            "detections_jsonl_identical": (b / "detections.jsonl").read_bytes() == (a / "detections.jsonl").read_bytes(),
            "same_files": files == sorted(p.name for p in a.iterdir()),
            "files": files,
            "same_summary_keys": keys(sb) == keys(sa),
            "same_frames_objects_changes_warnings": all(sb[k] == sa[k] for k in ("frames", "objects", "refinement_change", "warnings", "status")),
            "same_video_lengths": [frames(v) for v in sorted(b.glob("*.mp4"))] == [frames(v) for v in sorted(a.glob("*.mp4"))],
        }
    scores = "synthetic/demo-scores.json"
    result["synthetic_demo_scores_identical"] = (before / scores).read_bytes() == (after / scores).read_bytes()
    return result


if __name__ == "__main__":
    print(json.dumps(compare(Path(sys.argv[1]), Path(sys.argv[2])), indent=2))
