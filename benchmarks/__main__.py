"""`python -m benchmarks latency|fps|crowd|streams|accuracy|tracking ...`: one subcommand per module."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from pipeline.core.errors import BBRefinementError

SUBCOMMANDS = {
    "latency": "per-stage refinement latency per frame, per backbone and box count",
    "fps": "end-to-end pipeline FPS with and without refinement",
    "accuracy": "COCO AP of input boxes and of refined boxes",
    "distortion": "refined IoU vs distortion of the mixture centre (paper figure 8)",
    "training": "training runs side by side at equal CPU time (backbones, crop sizes, settings)",
    "mixing": "AP for every way of mixing input and refined boxes, and the per-box oracle",
    "train-speed": "training step cost per sample: input size, frozen stages, channels_last, batch",
    "calibrate": "fit blend temperature and IoU-aware scores on real detector boxes; reliability table",
    "summary": "one table from many accuracy reports (the ablation of refiner options)",
    "detector": "detector latency per frame, model files side by side (torch, OpenVINO, ONNX), crowd and bundled frames",
    "crowd": "detect-only vs refined FPS of the pipeline on a crowded real clip and the bundled clip",
    "streams": "total and per-stream FPS, refiner batch size and calls/s for 1, 2, 4, 8 streams",
    "tracking": "MOTA/IDF1 with and without refinement, jitter of standing boxes, refinement reused along tracks",
    "soak": "N streams x M frames: RSS and threads sampled, every frame accounted for",
    "gpu": "the GPU suite for a lent GPU machine (dry run without CUDA)",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Each benchmark's docstring as written, and every option's default."""


def module_of(command: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{command.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in SUBCOMMANDS.items():
        module = module_of(name)
        module.add_arguments(commands.add_parser(name, help=help_text, description=module.__doc__,
                                               formatter_class=HelpFormatter))
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # the report names the exact command
    try:
        module_of(args.command).main(args)
    except BBRefinementError as error:  # a bad input: its message says what to do
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
