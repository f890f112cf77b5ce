#!/bin/bash
# usage: latency.sh BEFORE_TREE AFTER_TREE OUTDIR -- the synthetic demo in each tree, alternately, under the same load
BEFORE=$1; AFTER=$2; OUT=$(realpath -m "$3")
mkdir "$OUT" || { echo "$OUT must be a new folder" >&2; exit 2; }
export YOLO_OFFLINE=1
for round in 1 2; do
  for tree in before after; do
    dir=$BEFORE; [ $tree = after ] && dir=$AFTER
    (cd "$dir" && nice -n 5 .venv/bin/python -m pipeline --source synthetic --max-frames 40 --output "$OUT/$tree-$round" > "$OUT/$tree-$round.log" 2>&1)
  done
done
python3 - "$OUT" <<'PY'
import json, sys, pathlib
for run in sorted(p for p in pathlib.Path(sys.argv[1]).glob("*-*") if p.is_dir()):
    s = json.load(open(run / "run" / "summary.json"))
    lat = {k: v["p50_ms"] for k, v in s["latency_ms"].items()}
    print(run.name, "fps", s["fps"], "end_to_end/detect p50", round(lat["end_to_end"] / lat["detect"], 2), lat)
PY
