"""Prototypes on dumped boxes (dump_boxes.py), AP % on train and val: IoU-aware score powers, and
keeping the sides a detector put on the image border. Scored through the pipeline's own blend
(benchmarks.calibrate.outputs: refined_weight, max_box_side, rescored). Run from the repo root with
PYTHONPATH=. after dumping runs/analysis/lite0-{train,val}.npz."""
import math

import numpy as np

from benchmarks.accuracy import select_images
from benchmarks.calibrate import outputs
from pipeline.data.coco import coco_ap, load_ground_truth
from pipeline.refine.policy import Calibration

GT = load_ground_truth("../shared/data/coco-person/annotations/instances_person.json")
for split in ("train", "val"):
    boxes, ids = dict(np.load(f"runs/analysis/lite0-{split}.npz")), select_images(GT, split)
    ap = lambda b, calibration: f"{100 * coco_ap(GT, outputs(b, calibration), ids)['AP']:.2f}"
    for side in (math.inf, 192.0):
        print(split, f"max side {side:g}, score powers 0 .25 .5 1 2:",
              *(ap(boxes, Calibration(0.1, 0.0, power, max_box_side=side)) for power in (0, 0.25, 0.5, 1, 2)))
    inputs, width, height = boxes["input"], boxes["width"], boxes["height"]
    on_border = np.stack([inputs[:, 0] <= 1, inputs[:, 1] <= 1, inputs[:, 2] >= width - 1, inputs[:, 3] >= height - 1], 1)
    pinned = {**boxes, "refined": np.where(on_border, inputs, boxes["refined"])}
    print(split, f"{on_border.any(1).sum()} boxes on the border; blend T 0.1: refined", ap(boxes, Calibration(0.1)),
          "border sides pinned", ap(pinned, Calibration(0.1)), "| left alone", ap(boxes, Calibration(gain_margin=math.inf)))
