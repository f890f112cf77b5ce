"""The project's train / held-out split of any image set, by a hash of each image's file name.

A hash (not a random draw) decides, so the split never changes between runs and an image shared by
two data sets falls on the same side in both. Training, calibration and INT8 quantisation use the
training side; the benchmarks' `--split val` scores on the other.
"""

from __future__ import annotations

import hashlib

VALIDATION_FRACTION = 0.15  # the share of images held out


def is_validation(file_name: str, fraction: float = VALIDATION_FRACTION) -> bool:
    """Deterministic split: the sha1 of the name, read as a fraction of 2^160, below `fraction`."""
    digest = int(hashlib.sha1(f"bbrefinement-val:{file_name}".encode()).hexdigest(), 16)
    return digest / 2**160 < fraction
