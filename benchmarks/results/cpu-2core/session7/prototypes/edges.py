"""Prototype on dumped boxes: does keeping the sides a detector put on the image edge change AP?"""
import numpy as np
from benchmarks.accuracy import select_images
from benchmarks.coco_eval import coco_results
from pipeline.data.coco import load_ground_truth, coco_ap
GT = load_ground_truth("../shared/data/coco-person/annotations/instances_person.json")
sig = lambda x: 1 / (1 + np.exp(-x))
def ap(b, boxes, ids):
    e = []
    for i in np.unique(b["image_id"]):
        r = b["image_id"] == i; e += coco_results(int(i), boxes[r], b["scores"][r], b["categories"][r])
    return 100 * coco_ap(GT, e, ids)["AP"]
for name in ("train", "val"):
    b = dict(np.load(f"runs/analysis/lite0-{name}.npz")); ids = select_images(GT, name)
    inp, ref = b["input"], b["refined"].copy(); W, H = b["width"], b["height"]
    at = np.stack([inp[:,0] <= 1, inp[:,1] <= 1, inp[:,2] >= W-1, inp[:,3] >= H-1], 1)
    w = sig((b["predicted"][:,1]-b["predicted"][:,0])/0.1)[:,None]
    pinned = np.where(at, inp, ref)
    side = np.maximum(inp[:,2]-inp[:,0], inp[:,3]-inp[:,1])
    print(name, "in %.2f blend %.2f pinned %.2f replace %.2f replace-pinned %.2f" % (ap(b, inp, ids), ap(b, inp + w*(ref-inp), ids), ap(b, inp + w*(pinned-inp), ids), ap(b, ref, ids), ap(b, pinned, ids)))
    for s in (128, 192, 256, 384):
        ws = np.where(side[:,None] > s, 0, w)
        print("  side<=%d blend %.2f pinned %.2f" % (s, ap(b, inp + ws*(ref-inp), ids), ap(b, inp + ws*(pinned-inp), ids)))
