"""One `read_model_spec` for every refiner file (.safetensors, .onnx, .engine), without loading weights.

Why: the run checks the detector's classes against the refiner's before it pays for loading or
exporting the refiner (seconds), and the spec is all that check needs.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.spec import RefinerSpec


def read_model_spec(path: Path) -> RefinerSpec:
    """The RefinerSpec stored in a checkpoint's metadata, an ONNX file's metadata or an engine's sidecar."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from pipeline.checkpoint import read_spec

        return read_spec(path)
    from pipeline.onnx_export import read_onnx_spec, read_sidecar

    if path.suffix == ".onnx":
        return read_onnx_spec(path)
    return RefinerSpec.from_json(json.dumps(read_sidecar(path)["spec"]))
