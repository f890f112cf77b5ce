"""`python -m train.seal FILE...`: write the weights digest into checkpoints saved before digests existed.

Every checkpoint saved by this project now carries the digest (pipeline.model.checkpoint.save_refiner);
this re-saves older ones, with the same weights, spec and metadata, so damage to them is refused at
load. A file that already has a digest is checked (loaded) and left as it is. The file's bytes change,
so ONNX exports and engines built from it are rebuilt on their next use (they are keyed by its hash).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.core.errors import BBRefinementError
from pipeline.model.artifacts import read_spec
from pipeline.model.checkpoint import load_refiner, seal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.seal", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+", metavar="FILE", help=".safetensors refiner checkpoints")
    args = parser.parse_args(argv)
    try:
        for path in args.checkpoints:
            digest = read_spec(path).weights_digest
            if digest:
                load_refiner(path)  # raises if the weights no longer match
                print(f"{path}: already sealed ({digest}), weights match")
            else:
                print(f"{path}: sealed {seal(path)}")
    except BBRefinementError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
