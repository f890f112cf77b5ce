"""`python build_engine.py --refiner CHECKPOINT ...`: ONNX and TensorRT engines with sidecars (pipeline.backends.build).

The command line only: the options become a BuildOptions, the library builds, and errors become
one line and an exit code (2: a bad input or a TensorRT this machine cannot build; 1: a failed build).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.backends.build import BuildOptions, ParityError, build_all, models_to_build
from pipeline.backends.tensorrt import CHOICES, PORTABLE_TARGETS, PRECISIONS, TensorRTUnavailable, parse_targets
from pipeline.core.errors import BackendError, BBRefinementError
from pipeline.core.spec import BACKBONES
from pipeline.model.defaults import ENGINES_DIR


def backbone_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip().lower() for name in text.split(",") if name.strip())
    if not names or any(name not in BACKBONES for name in names):
        raise argparse.ArgumentTypeError(f"{text!r} names no backbone list; choose from {','.join(BACKBONES)}")
    return names


def compute_capabilities(text: str) -> tuple[str, ...]:
    try:
        return parse_targets(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """Every option's default is shown once, by the formatter; help texts say what it means."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--refiner", type=Path, help="trained refiner checkpoint (.safetensors)")
    source.add_argument("--backbones", type=backbone_list, help="random-init paper backbones, e.g. b0,b1,b2,b3,b4")
    parser.add_argument("--classes", default="person", help="class names for --backbones, comma-separated")
    parser.add_argument("--max-batch", type=int, default=BuildOptions.max_batch, help="largest batch the engine accepts")
    parser.add_argument("--opt-batch", type=int, default=BuildOptions.opt_batch, help="batch TensorRT tunes for (detections per frame)")
    parser.add_argument("--precision", choices=PRECISIONS, default=BuildOptions.precision, help="engine precision (the ONNX file is fp32)")
    parser.add_argument(
        "--trt", choices=CHOICES, default=BuildOptions.trt, help="TensorRT flavour (auto: tensorrt on a GPU, else tensorrt_rtx)"
    )
    parser.add_argument(
        "--compute-capability", type=compute_capabilities, default="portable",
        help=f"TensorRT-RTX targets, comma-separated, or current (portable: {','.join(PORTABLE_TARGETS)}; sm75 opt-in)",
    )
    parser.add_argument("--out", type=Path, default=ENGINES_DIR, help="output folder")
    parser.add_argument(
        "--triton-repo", type=Path, help="also write a Triton model repository here (ONNX Runtime and TensorRT models)"
    )
    parser.add_argument(
        "--triton-queue-timeout-ms", type=float, default=BuildOptions.triton_queue_timeout_ms,
        help="--triton-repo: the server rejects requests queued longer than this (a GPU batch takes ms, a CPU one can take 100+)",
    )
    parser.add_argument("--seed", type=int, default=BuildOptions.seed, help="seed for random-init weights, parity and calibration crops")
    parser.add_argument(
        "--int8-calibration", nargs="+", action="append", metavar="PATH", default=[],
        help="also write <name>.int8.onnx (NNCF) calibrated on this COCO set's training images: ANNOTATIONS IMAGES "
        "[DETECTIONS (COCO results of your detector)]; repeat for more sets",
    )
    parser.add_argument("--int8-crops", type=int, default=BuildOptions.int8_crops, help="calibration crops for --int8-calibration")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        options = BuildOptions(
            out=arguments.out, max_batch=arguments.max_batch, opt_batch=arguments.opt_batch, precision=arguments.precision,
            trt=arguments.trt, compute_capability=arguments.compute_capability, triton_repo=arguments.triton_repo,
            triton_queue_timeout_ms=arguments.triton_queue_timeout_ms, seed=arguments.seed, report=print,
            int8_calibration=tuple(tuple(Path(path) for path in paths) for paths in arguments.int8_calibration),
            int8_crops=arguments.int8_crops,
        )
        classes = tuple(name.strip() for name in arguments.classes.split(",") if name.strip())
        build_all(models_to_build(arguments.refiner, arguments.backbones or (), classes, arguments.seed), options)
    except TensorRTUnavailable as error:  # a BackendError, but this machine's limit, not a failed build
        return failed(error, 2)
    except (BackendError, ParityError, OSError) as error:
        return failed(error, 1)
    except BBRefinementError as error:
        return failed(error, 2)
    return 0


def failed(error: Exception, code: int) -> int:
    print(f"error: {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
