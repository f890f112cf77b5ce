"""What a training step costs on this CPU: milliseconds per sample for backbone x input size x frozen stages x layout x batch.

Accuracy per CPU-hour is steps per hour times what a step teaches; this measures the first factor
for every knob that changes it, on random crops (the cost of a step does not depend on pixels),
with the optimizer step included. Medians of --steps timed steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from benchmarks.report import environment, markdown_table, write_report
from pipeline.core.spec import paper_spec
from pipeline.model.net import RefinerNet
from train.loop import freeze_early_stages


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbones", default="lite0", help="comma-separated short names (default: %(default)s)")
    parser.add_argument("--sizes", default="128,160,224", help="input sides in px (default: %(default)s)")
    parser.add_argument("--freeze", default="0,2,3", help="frozen early stages to try (default: %(default)s)")
    parser.add_argument("--batches", default="32", help="batch sizes (default: %(default)s)")
    parser.add_argument("--channels-last", action="store_true", help="also time every setting with NHWC weights")
    parser.add_argument("--head", default="edges", help="refiner head (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    parser.add_argument("--out", default=None, help="report JSON (a .md is written beside it)")


def step_milliseconds(short: str, size: int, freeze: int, channels_last: bool, batch: int, head: str, steps: int) -> float:
    """Median wall time of one forward + backward + AdamW step, per sample."""
    model = RefinerNet(paper_spec(short, ("person",), input_size=size, head=head)).train()
    freeze_early_stages(model, freeze)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    crops = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    vectors = torch.rand(batch, model.spec.vector_size)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        model(crops, vectors).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[1:]) / batch


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    env = environment(args.argv)
    rows: list[dict[str, Any]] = []
    layouts = (False, True) if args.channels_last else (False,)
    for short in args.backbones.split(","):
        for size in map(int, args.sizes.split(",")):
            for freeze in map(int, args.freeze.split(",")):
                for batch in map(int, args.batches.split(",")):
                    for layout in layouts:
                        ms = step_milliseconds(short, size, freeze, layout, batch, args.head, args.steps)
                        rows.append({"backbone": short, "size": size, "frozen_stages": freeze, "channels_last": layout,
                                     "batch": batch, "ms_per_sample": ms, "samples_per_hour": 3.6e6 / ms})
                        print(rows[-1], flush=True)
    table = markdown_table(["backbone", "input px", "frozen stages", "channels_last", "batch", "ms / sample", "samples / CPU-hour"],
                           [[r["backbone"], r["size"], r["frozen_stages"], r["channels_last"], r["batch"], f"{r['ms_per_sample']:.1f}",
                             f"{r['samples_per_hour']:,.0f}"] for r in rows])
    write_report(args.out, "Training step cost per sample", env, {"threads": args.threads, "head": args.head, "rows": rows},
                 f"{args.threads} torch threads, {args.head} head, median of {args.steps} steps.\n\n{table}\n")
