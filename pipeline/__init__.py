"""BBRefinement-RT: refine an object detector's boxes in real time (Hurtik et al., ICLR 2021 submission).

Public API: `from pipeline import Refiner` (see README "Python API"). Names are imported on first
use, so `import pipeline.core.spec` (training, tools) does not pay for OpenCV and the runtimes.
Every error a user can cause is a `BBRefinementError`; its subclasses say which input was wrong.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_ERRORS = ("BBRefinementError", "BackendError", "ClassMappingError", "DefaultModelError", "ModelFileError", "SpecError",
           "UsageError")
_EXPORTS = {
    "Refiner": "pipeline.refine.api",
    "RefinedDetections": "pipeline.core.types",
    "build_frame_refiner": "pipeline.refine.refiner",
    "RefineStatus": "pipeline.core.types",
    "Detections": "pipeline.core.types",
    "RefinerSpec": "pipeline.core.spec",
    "TrackOptions": "pipeline.track.stream",
    "Tracker": "pipeline.track.tracker",
    **{name: "pipeline.core.errors" for name in _ERRORS},
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from pipeline.core.errors import (
        BackendError,
        BBRefinementError,
        ClassMappingError,
        DefaultModelError,
        ModelFileError,
        SpecError,
        UsageError,
    )
    from pipeline.core.spec import RefinerSpec
    from pipeline.core.types import Detections, RefinedDetections, RefineStatus
    from pipeline.refine.api import Refiner
    from pipeline.refine.refiner import build_frame_refiner
    from pipeline.track.stream import TrackOptions
    from pipeline.track.tracker import Tracker


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
