"""`python -m train.export_fp16 IN OUT`: the float16 copy of a trained refiner, the file engines/ commits.

Training writes float32 (runs/train/, git-ignored); the committed copy is float16, half the clone
size. The copy is checked on real crops before it is kept: the default detector's boxes on frames
of the bundled clip, refined by both files with the torch backend and the replace policy (the
network's own boxes), must agree within TOLERANCE_PX and TOLERANCE_IOU (measured: the person refiner
0.16 px and 0.0034 at most, the 80-class one 0.04 px and 0.0061; engines/README.md). The training
log IN.log.jsonl is copied beside OUT.

Example (the committed person refiner):
    python -m train.export_fp16 runs/train/refiner-person-lite0-160-edges.safetensors engines/refiner-person-lite0-160-edges.safetensors
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.errors import BBRefinementError
from pipeline.core.types import Frame
from pipeline.io.detectors import open_detector
from pipeline.model.checkpoint import half_precision_copy
from pipeline.model.defaults import DEMO_VIDEO, default_detector

TOLERANCE_PX = 0.5  # largest box side difference accepted, in pixels of the 768x432 clip
TOLERANCE_IOU = 0.02  # largest predicted-IoU difference accepted
FRAMES = tuple(range(0, 300, 30))  # 10 frames: people entering, crossing and leaving, and other objects
CONF = 0.1  # low, for more (and poorer) boxes to compare on


@dataclass(frozen=True)
class Parity:
    boxes: int
    max_px: float
    mean_px: float
    max_iou: float

    @property
    def within_tolerance(self) -> bool:
        return self.max_px <= TOLERANCE_PX and self.max_iou <= TOLERANCE_IOU

    def __str__(self) -> str:
        return (f"{self.boxes} boxes on real crops: box sides differ by {self.max_px:.4f} px at most "
                f"(mean {self.mean_px:.4f}), predicted IoU by {self.max_iou:.5f}")


def compare_on_real_crops(reference: Path, candidate: Path, frames: tuple[int, ...] | None = None) -> Parity:
    """Refine the default detector's boxes on frames of the bundled clip with both files; how far they differ.

    Every box is refined as the refiner's first class: parity is about numbers, not class mapping.
    """
    from pipeline.refine.api import Refiner

    refiners = [Refiner(path, backend="torch", device="cpu", policy="replace") for path in (reference, candidate)]
    detector = open_detector(default_detector(), conf=CONF, device="cpu", warm_up=False)
    capture = cv2.VideoCapture(str(DEMO_VIDEO))
    sides, ious = [], []
    for index in FRAMES if frames is None else frames:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, image = capture.read()
        if not ok:
            break
        boxes = detector.detect(Frame(index, image, None, DEMO_VIDEO.name)).boxes
        results = [refiner.refine(image, boxes, refiner.class_names[0]) for refiner in refiners]
        sides.append(np.abs(results[0].boxes - results[1].boxes).ravel())
        if results[0].predicted_iou is not None:
            ious.append(np.abs(results[0].predicted_iou - results[1].predicted_iou).ravel())
    capture.release()
    sides_all = np.concatenate(sides) if sides else np.zeros(0)
    ious_all = np.concatenate(ious) if ious else np.zeros(0)
    if not sides_all.size:
        raise BBRefinementError(f"the detector found no box on {DEMO_VIDEO.name}; cannot compare the files")
    return Parity(sides_all.size // 4, float(sides_all.max()), float(sides_all.mean()),
                  float(np.nanmax(ious_all)) if ious_all.size else 0.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.export_fp16", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, metavar="IN", help="float32 refiner (.safetensors), e.g. runs/train/NAME.safetensors")
    parser.add_argument("target", type=Path, metavar="OUT", help="float16 copy to write, e.g. engines/NAME.safetensors")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.source.resolve() == args.target.resolve():
        print("error: IN and OUT are the same file; write the copy elsewhere (training keeps the float32 file)", file=sys.stderr)
        return 2
    temporary = args.target.with_name(f"{args.target.stem}.unchecked.safetensors")  # a model file the backends open
    try:
        half_precision_copy(args.source, temporary)
        parity = compare_on_real_crops(args.source, temporary)
    except BBRefinementError as error:
        temporary.unlink(missing_ok=True)
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(parity)
    if not parity.within_tolerance:
        temporary.unlink(missing_ok=True)
        print(f"error: beyond the tolerance ({TOLERANCE_PX} px, {TOLERANCE_IOU} IoU); keep this model in float32", file=sys.stderr)
        return 1
    temporary.replace(args.target)
    log = args.source.with_suffix(".log.jsonl")
    if log.is_file() and log.resolve() != args.target.with_suffix(".log.jsonl").resolve():
        shutil.copyfile(log, args.target.with_suffix(".log.jsonl"))
    print(f"wrote {args.target} ({args.target.stat().st_size / 2**20:.1f} MB, was {args.source.stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
