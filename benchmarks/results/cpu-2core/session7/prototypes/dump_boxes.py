"""Dump per-box refiner outputs on a detector's boxes (for policy analysis)."""
import argparse, sys
import numpy as np
from benchmarks.accuracy import add_input_arguments, open_inputs
from benchmarks.mixing import refine_all
p = argparse.ArgumentParser(); add_input_arguments(p); p.add_argument("--flip-tta", action="store_true"); p.add_argument("--npz")
a = p.parse_args()
gt, ids, det, backend = open_inputs(a)
try:
    boxes = refine_all(gt, a.images, ids, det, backend, flip_tta=a.flip_tta)
finally:
    backend.close()
boxes["width"] = np.array([gt.imgs[int(i)]["width"] for i in boxes["image_id"]]); boxes["height"] = np.array([gt.imgs[int(i)]["height"] for i in boxes["image_id"]])
np.savez(a.npz, **boxes)
print(len(boxes["scores"]), "boxes", "iou in", boxes["iou_input"].mean(), "out", boxes["iou_refined"].mean())
