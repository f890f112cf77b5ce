"""One table from many accuracy reports: the ablation of refiner options, or the same model on several inputs.

Each row is one `python -m benchmarks accuracy` JSON: its input boxes, its options (flip TTA,
iterations, --min-size), the baseline AP and the AP of every scored policy with its change, so
"each idea on and off" reads off one table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.report import environment, markdown_table, write_report
from pipeline.refine.policy import POLICIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reports", type=Path, nargs="+", required=True, help="accuracy report JSONs")
    parser.add_argument("--metric", default="AP", choices=("AP", "AP50", "AP75", "APs", "APm", "APl"))
    parser.add_argument("--title", default="Refiner options, each on and off")
    parser.add_argument("--out", type=Path, default=None, help="summary JSON (a .md is written beside it)")


def read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"cannot read accuracy report {path} ({error})") from None
    if "baseline" not in report or "refined" not in report:
        raise SystemExit(f"{path} is not a `python -m benchmarks accuracy` report")
    return report


def summary_row(path: Path, report: dict[str, Any], metric: str) -> dict[str, Any]:
    options = report.get("options", {"flip_tta": False, "iterations": 1, "min_size": 0.0})
    row: dict[str, Any] = {
        "report": Path(path).name,
        "input": report["input"],
        "images": report["images"],
        "options": options,
        "baseline": report["baseline"][metric],
    }
    for policy in POLICIES:
        scores = report.get(f"refined_{policy}")
        row[policy] = None if scores is None else scores[metric]
    return row


def describe_options(options: dict[str, Any]) -> str:
    parts = []
    if options.get("flip_tta"):
        parts.append("flip TTA")
    if options.get("iterations", 1) > 1:
        parts.append(f"{options['iterations']} iterations")
    if options.get("min_size", 0):
        parts.append(f"min size {options['min_size']:g}")
    return ", ".join(parts) or "none"


def percent_and_change(value: float | None, baseline: float | None) -> str:
    if value is None or baseline is None:
        return "n/a"
    return f"{100 * value:.1f} ({100 * (value - baseline):+.1f})"


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    rows = [summary_row(path, read_report(path), args.metric) for path in args.reports]
    table = markdown_table(
        ["input boxes", "images", "options", f"baseline {args.metric} %", *(f"{p} % (change)" for p in POLICIES)],
        [[r["input"], r["images"], describe_options(r["options"]), f"{100 * r['baseline']:.1f}",
          *(percent_and_change(r[p], r["baseline"]) for p in POLICIES)] for r in rows],
    )
    results = {"metric": args.metric, "keys": "per row: report, input, images, options, baseline and each policy's "
               f"{args.metric} as fractions", "results": rows}
    write_report(args.out, args.title, env, results, table + "\n")
