#!/bin/bash
# Accuracy tables and the ablation (each option on and off) for one refiner. Usage: benchmarks/ablation.sh REFINER OUTDIR
set -e
R=$1; O=$2; mkdir -p $O
C=../shared/data/coco-person; M=../shared/data/mot17-mini
coco() { .venv/bin/python -m benchmarks accuracy --annotations $C/annotations/instances_person.json --images $C/images --split val --refiner $R "$@"; }
mot() { .venv/bin/python -m benchmarks accuracy --annotations $M/annotations/gt_pedestrian.json --images $M/sequences --detections $M/annotations/det_results.json --refiner $R "$@"; }
for s in 0.05 0.1 0.2; do coco --jitter $s --seed 0 --out $O/accuracy-coco-person-val-jitter$s.json > /dev/null; done
mot --out $O/accuracy-mot17-mini-det_results.json > /dev/null
for opt in "--flip-tta" "--iterations 2" "--flip-tta --iterations 2"; do
  tag=$(echo $opt | tr -d '-' | tr ' ' '_')
  coco --jitter 0.1 --seed 0 $opt --out $O/ablation-coco-person-val-jitter0.1-$tag.json > /dev/null
  coco --jitter 0.05 --seed 0 $opt --out $O/ablation-coco-person-val-jitter0.05-$tag.json > /dev/null
  mot $opt --out $O/ablation-mot17-mini-$tag.json > /dev/null
done
for m in 16 32 64; do
  mot --min-size $m --out $O/ablation-mot17-mini-minsize$m.json > /dev/null
  coco --jitter 0.05 --seed 0 --min-size $m --out $O/ablation-coco-person-val-jitter0.05-minsize$m.json > /dev/null
done
# How much of the refined box to take (fixed weights, blend temperatures, per-box oracle)
mix() { .venv/bin/python -m benchmarks mixing --refiner $R "$@" > /dev/null; }
for s in 0.05 0.1 0.2; do
  mix --annotations $C/annotations/instances_person.json --images $C/images --split val --jitter $s --out $O/mixing-coco-person-val-jitter$s.json
done
mix --annotations $M/annotations/gt_pedestrian.json --images $M/sequences --detections $M/annotations/det_results.json --out $O/mixing-mot17-mini.json
echo done
