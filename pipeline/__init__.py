"""BBRefinement-RT: refine an object detector's boxes in real time (Hurtik et al., ICLR 2021 submission).

Public API: `from pipeline import Refiner` (see README "Python API"). Names are imported on first
use, so `import pipeline.spec` (training, tools) does not pay for OpenCV and the runtimes.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Refiner": "pipeline.api",
    "RefineResult": "pipeline.api",
    "build_frame_refiner": "pipeline.api",
    "RefineStatus": "pipeline.refine",
    "Detections": "pipeline.detectors",
    "RefinerSpec": "pipeline.spec",
    "BackendError": "pipeline.backends.base",
    "ClassMappingError": "pipeline.class_mapping",
    "DefaultModelError": "pipeline.defaults",
    "SpecError": "pipeline.spec",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from pipeline.api import Refiner, RefineResult, build_frame_refiner
    from pipeline.backends.base import BackendError
    from pipeline.class_mapping import ClassMappingError
    from pipeline.defaults import DefaultModelError
    from pipeline.detectors import Detections
    from pipeline.refine import RefineStatus
    from pipeline.spec import RefinerSpec, SpecError


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
