"""`python -m pipeline.app.synthetic_data dataset|clip`: write generated scenes (pipeline.data.synthetic) to disk.

dataset: a COCO dataset of still scenes (optionally with YOLO labels and a data.yaml, for training the
demo detector); clip: an mp4 of moving objects and its COCO ground truth. Prints what it wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.data.synthetic import parse_size, write_clip, write_coco_dataset, write_yolo_data_yaml, write_yolo_labels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.app.synthetic_data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dataset = commands.add_parser("dataset", help="COCO dataset of still scenes (optionally with YOLO labels)")
    dataset.add_argument("--out", type=Path, required=True)
    dataset.add_argument("--images", type=int, required=True)
    dataset.add_argument("--size", type=parse_size, default=(640, 480), help="WIDTHxHEIGHT")
    dataset.add_argument("--seed", type=int, default=0)
    dataset.add_argument("--yolo", action="store_true", help="also write labels/ and a data.yaml (train = val = this set)")
    clip = commands.add_parser("clip", help="mp4 of moving objects plus COCO ground truth")
    clip.add_argument("--out", type=Path, required=True)
    clip.add_argument("--frames", type=int, required=True)
    clip.add_argument("--size", type=parse_size, default=(1280, 720), help="WIDTHxHEIGHT")
    clip.add_argument("--seed", type=int, default=0)
    clip.add_argument("--objects", type=int, default=8)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dataset":
        print(write_coco_dataset(args.out, args.images, *args.size, args.seed))
        if args.yolo:
            write_yolo_labels(args.out)
            print(write_yolo_data_yaml(args.out / "data.yaml", args.out, args.out))
    else:
        print(write_clip(args.out, args.frames, *args.size, args.seed, args.objects))
    return 0


if __name__ == "__main__":
    sys.exit(main())
