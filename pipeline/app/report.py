"""What a run says when it ends: FPS, per-stage latency, and how many boxes were refined and by how much.

Why here: the CLI prints it after every run and the demo adds its own lines, from one formatter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.geometry import box_iou_pairs
from pipeline.core.types import RefinedDetections

STAGE_ORDER = ("read", "detect", "crop", "refine", "write", "end_to_end")


class ChangeStats:
    """Accumulates, over a run, how far refined boxes moved from the detector's (IoU and side shift in pixels)."""

    def __init__(self) -> None:
        self._ious: list[np.ndarray] = []
        self._shifts: list[np.ndarray] = []

    def add(self, objects: RefinedDetections) -> None:
        changed = objects.changed
        if not changed.any():
            return
        detector = objects.detections.boxes[changed].astype(np.float64)
        refined = objects.refined_boxes[changed]
        self._ious.append(box_iou_pairs(detector, refined))
        self._shifts.append(np.abs(refined - detector).mean(axis=1))

    def summary(self) -> dict[str, Any]:
        if not self._ious:
            return {"changed": 0}
        ious, shifts = np.concatenate(self._ious), np.concatenate(self._shifts)
        return {
            "changed": int(len(ious)),
            "iou_detector_vs_refined": {"mean": round(float(ious.mean()), 4), "min": round(float(ious.min()), 4)},
            "side_shift_px": {
                "mean": round(float(shifts.mean()), 2),
                "p95": round(float(np.percentile(shifts, 95)), 2),
                "max": round(float(shifts.max()), 2),
            },
        }


def format_run_summary(summary: dict[str, Any]) -> str:
    """Plain-text lines for the end of a run: frames, FPS, latency per stage, objects and box changes."""
    frames = summary.get("frames", {})
    fps = summary.get("fps")
    lines = [
        f"{frames.get('processed', 0)} frames in {summary.get('elapsed_s', 0):.1f} s: "
        + (f"{fps:.1f} FPS" if fps else "FPS n/a")
        + (f", {frames['dropped']} dropped" if frames.get("dropped") else ""),
        f"latency per stage, ms   {'p50':>8} {'p95':>8}",
    ]
    latency = summary.get("latency_ms", {})
    for stage in sorted(latency, key=lambda name: (STAGE_ORDER.index(name) if name in STAGE_ORDER else 99, name)):
        values = latency[stage]
        lines.append(f"  {stage:<20} {_ms(values.get('p50_ms'))} {_ms(values.get('p95_ms'))}")
    objects = summary.get("objects", {})
    if objects:
        lines.append("boxes: " + ", ".join(f"{count} {status}" for status, count in sorted(objects.items(), key=lambda kv: -kv[1])))
    change = summary.get("refinement_change") or {}
    if change.get("changed"):
        lines.append(
            f"refined boxes moved {change['side_shift_px']['mean']:.1f} px per side on average "
            f"(p95 {change['side_shift_px']['p95']:.1f}, max {change['side_shift_px']['max']:.1f}); "
            f"IoU with the detector's box: mean {change['iou_detector_vs_refined']['mean']:.3f}, "
            f"min {change['iou_detector_vs_refined']['min']:.3f}"
        )
    server = (summary.get("refiner") or {}).get("server")
    if server and server.get("requests"):
        lines.append(
            f"triton {server['model']} at {server['url']}: {server['requests']} requests in {server['batches']} batches, "
            f"mean queue {server['queue_ms_mean']:.1f} ms, compute {server['compute_ms_mean']:.1f} ms per request"
        )
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return f"{value:8.1f}" if value is not None else f"{'-':>8}"
