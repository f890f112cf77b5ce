"""Prototype on dumped boxes: detector score x predicted IoU ** power (IoU-Net style), AP on train and val."""
import numpy as np
from benchmarks.accuracy import select_images
from benchmarks.coco_eval import coco_results
from pipeline.data.coco import load_ground_truth, coco_ap
GT = load_ground_truth("../shared/data/coco-person/annotations/instances_person.json")
sig = lambda x: 1 / (1 + np.exp(-x))
def ap(b, boxes, scores, ids):
    e = []
    for i in np.unique(b["image_id"]):
        r = b["image_id"] == i; e += coco_results(int(i), boxes[r], scores[r], b["categories"][r])
    return 100 * coco_ap(GT, e, ids)["AP"]
for name in ("train", "val"):
    b = dict(np.load(f"runs/analysis/lite0-{name}.npz")); ids = select_images(GT, name)
    inp, ref, p, s = b["input"], b["refined"], b["predicted"], b["scores"]
    w = sig((p[:,1]-p[:,0])/0.1)
    side = np.maximum(inp[:,2]-inp[:,0], inp[:,3]-inp[:,1])
    for limit in (np.inf, 192):
        wl = np.where(side > limit, 0, w); boxes = inp + wl[:,None]*(ref-inp); fit = np.clip(p[:,0] + wl*(p[:,1]-p[:,0]), 1e-6, 1)
        row = [f"{ap(b, boxes, s * fit**k, ids):.2f}" for k in (0, 0.25, 0.5, 1, 2)]
        print(name, "side<=", limit, "powers 0 .25 .5 1 2:", *row, "| input boxes rescored p=.5:", f"{ap(b, inp, s*np.clip(p[:,0],1e-6,1)**0.5, ids):.2f}")
