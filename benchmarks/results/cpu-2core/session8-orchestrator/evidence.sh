#!/bin/bash
# usage: evidence.sh TREE OUTDIR
set -x
TREE=$1; OUT=$2
mkdir "$OUT" || { echo "$OUT must be a new folder" >&2; exit 2; }
cd $TREE
PY=${PYTHON:-.venv/bin/python}
export YOLO_OFFLINE=1
CLIP=assets/one-by-one-person-detection.mp4
nice -n 5 $PY -m pipeline --source synthetic --max-frames 40 --output $OUT/synthetic > $OUT/synthetic.stdout 2> $OUT/synthetic.stderr; echo "rc $?" >> $OUT/synthetic.stderr
nice -n 5 $PY -m pipeline --source $CLIP --max-frames 12 --output $OUT/one > $OUT/one.stdout 2> $OUT/one.stderr; echo "rc $?" >> $OUT/one.stderr
nice -n 5 $PY -m pipeline --source $CLIP --source $CLIP --max-frames 8 --batch-timeout-ms 60000 --output $OUT/two > $OUT/two.stdout 2> $OUT/two.stderr; echo "rc $?" >> $OUT/two.stderr
nice -n 5 $PY -m pipeline --source $CLIP --max-frames 6 --no-refine --output $OUT/norefine > $OUT/norefine.stdout 2> $OUT/norefine.stderr; echo "rc $?" >> $OUT/norefine.stderr
