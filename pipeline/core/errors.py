"""Every error a user can cause derives from `BBRefinementError`, and its message says what to do.

Why one base: the library raises and only the CLIs exit, so a CLI catches this one class and
prints its message as one line (exit 2), while anything else is a bug and keeps its traceback.
The subclasses say which input was wrong; each also derives from the builtin it refines
(ValueError, FileNotFoundError, ...) so callers catching those keep working.
"""

from __future__ import annotations


class BBRefinementError(Exception):
    """Something the user can fix: a bad argument, a missing or wrong file, a runtime not installed here."""


class UsageError(BBRefinementError, ValueError):
    """A run or command cannot start with these arguments; the message says what to change."""


class SpecError(BBRefinementError, ValueError):
    """A model file's spec is missing, malformed, or of a version this code cannot read."""


class ModelFileError(BBRefinementError):
    """A refiner file (checkpoint, ONNX, engine or its sidecar) is missing, unreadable or disagrees with its spec."""


class BackendError(BBRefinementError, RuntimeError):
    """A runtime cannot be used here (missing package or GPU, or a model built for elsewhere)."""


class GeometryError(BBRefinementError, ValueError):
    """A box cannot be turned into a crop window (NaN, infinite, empty or absurdly large)."""


class ClassMappingError(BBRefinementError, ValueError):
    """The detector's classes and the refiner's classes cannot be matched."""


class SourceError(BBRefinementError, ValueError):
    """A video source cannot be opened or read."""


class OutputError(BBRefinementError, OSError):
    """An output file cannot be written while a run goes on: the disk is full, a file size limit or quota is reached."""


class DetectorError(BBRefinementError, ValueError):
    """A detector cannot be loaded: missing or unreadable model or detections file."""


class DefaultModelError(BBRefinementError, FileNotFoundError):
    """No default model where they are looked for ($BBREFINE_MODELS, the installed package, the checkout)."""


class PretrainedWeightsError(BBRefinementError, RuntimeError):
    """ImageNet weights for a backbone are not installed or do not fit the network."""
