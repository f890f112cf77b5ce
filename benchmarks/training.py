"""Training runs side by side at equal CPU time: which backbone, crop size or setting learns fastest.

Reads the per-epoch logs `python -m train` writes (`<out>.log.jsonl`) and, for each run, reports
the validation IoU (input, refined, gated) of its best epoch within a common time budget, so runs
of different speed are compared fairly (the issue's "compare at equal CPU time"), plus a plot of
refined IoU against training minutes. Runs must share the validation setup to be comparable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.report import environment, markdown_table, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logs", type=Path, nargs="+", required=True, help="train logs (.log.jsonl)")
    parser.add_argument("--labels", nargs="+", help="one label per log (default: the log's folder name)")
    parser.add_argument("--minutes", type=float, default=None, help="time budget (default: the shortest run's length)")
    parser.add_argument("--out", type=Path, default=None, help="report JSON (a .md and a .png are written beside it)")


def read_log(path: Path) -> list[dict[str, Any]]:
    try:
        records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"cannot read training log {path} ({error})") from None
    if not records or "val_iou_refined" not in records[0] or "minutes" not in records[0]:
        raise SystemExit(f"{path} is not a `python -m train` log (no val_iou_refined / minutes)")
    return records


def best_within(records: list[dict[str, Any]], minutes: float) -> dict[str, Any] | None:
    """The best epoch (by the training score) that ended within `minutes`, None if none did."""
    in_time = [r for r in records if r["minutes"] <= minutes + 1e-9]
    return max(in_time, key=lambda r: r.get("score", r["val_iou_refined"])) if in_time else None


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    labels = args.labels or [Path(path).parent.name for path in args.logs]
    if len(labels) != len(args.logs):
        raise SystemExit(f"{len(args.logs)} logs but {len(labels)} labels; give one label per log")
    runs = {label: read_log(path) for label, path in zip(labels, args.logs, strict=True)}
    budget = args.minutes or min(records[-1]["minutes"] for records in runs.values())
    rows = []
    for label, records in runs.items():
        best = best_within(records, budget)
        rows.append({
            "run": label,
            "epochs_in_budget": sum(r["minutes"] <= budget + 1e-9 for r in records),
            **({k: best[k] for k in ("epoch", "val_iou_input", "val_iou_refined", "val_iou_gated") if k in best} if best else {}),
        })
    results = {"budget_minutes": round(budget, 2), "logs": {label: str(path) for label, path in zip(labels, args.logs)},
               "keys": "per run: epochs_in_budget and the best in-budget epoch's val IoU (input, refined, gated)",
               "results": rows}
    table = markdown_table(
        ["run", "epochs in budget", "best epoch", "val IoU input", "refined", "gated"],
        [[r["run"], r["epochs_in_budget"], r.get("epoch"), r.get("val_iou_input"), r.get("val_iou_refined"), r.get("val_iou_gated")]
         for r in rows],
    )
    body = f"Best epoch of each run within {budget:.1f} training minutes (wall clock of the run).\n\n{table}\n"
    write_report(args.out, "Training runs at equal CPU time", env, results, body)
    if args.out is not None:
        plot(runs, Path(args.out).with_suffix(".png"))


def plot(runs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(6, 4))
    for label, records in runs.items():
        axis.plot([r["minutes"] for r in records], [r["val_iou_refined"] for r in records], marker="o", label=label)
    first = next(iter(runs.values()))
    axis.axhline(first[0]["val_iou_input"], color="grey", linestyle="--", label="input boxes")
    axis.set_xlabel("training minutes")
    axis.set_ylabel("val mean IoU, refined")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
