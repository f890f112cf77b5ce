"""`python build_engine.py --refiner CHECKPOINT ...`: ONNX and TensorRT engines with sidecars (pipeline.backends.build)."""

import sys

from pipeline.backends.build import main

if __name__ == "__main__":
    sys.exit(main())
