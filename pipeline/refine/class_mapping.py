"""Map a detector's classes onto a refiner's classes by name.

Detector and refiner are trained separately, often on different label sets (COCO's "person",
MOT's "pedestrian", VOC's "tvmonitor"), so class ids cannot be trusted to agree; names can, after
normalising case and separators and applying a small alias table. Detections of classes the
refiner does not know are passed through unrefined rather than refined with a wrong class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import ClassMappingError

# Other datasets' spellings -> COCO's, the usual refiner training set.
ALIASES: dict[str, str] = {
    "pedestrian": "person",
    "people": "person",
    "human": "person",
    "motorbike": "motorcycle",
    "bike": "bicycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "tvmonitor": "tv",
    "diningtable": "dining table",
    "pottedplant": "potted plant",
}


def canonical_name(name: str, aliases: dict[str, str] = ALIASES) -> str:
    """Lower case, "_" and "-" as spaces, single spaces, then the alias table."""
    words = " ".join(name.lower().replace("_", " ").replace("-", " ").split())
    return aliases.get(words, aliases.get(words.replace(" ", ""), words))


@dataclass(frozen=True)
class ClassMapping:
    """detector class id -> refiner class id, or -1 where the refiner does not know the class."""

    detector_names: tuple[str, ...]
    refiner_names: tuple[str, ...]
    table: np.ndarray  # (len(detector_names),) int64

    def __post_init__(self) -> None:
        table = np.asarray(self.table, dtype=np.int64)
        if table.shape != (len(self.detector_names),):
            raise ValueError(f"mapping table needs one entry per detector class; got {table.shape}")
        if ((table < -1) | (table >= len(self.refiner_names))).any():
            raise ValueError("mapping table entries must be -1 or a refiner class id")
        object.__setattr__(self, "table", table)

    @classmethod
    def by_name(
        cls, detector_names: tuple[str, ...], refiner_names: tuple[str, ...], aliases: dict[str, str] = ALIASES
    ) -> ClassMapping:
        refiner_ids = {canonical_name(name, aliases): index for index, name in enumerate(refiner_names)}
        table = np.array([refiner_ids.get(canonical_name(name, aliases), -1) for name in detector_names], dtype=np.int64)
        if not (table >= 0).any():
            # COCO results files name classes by category id; only their ground truth has the names.
            hint = "pass --coco-gt GT.json to name the category ids, " if all(name.isdigit() for name in detector_names) else ""
            raise ClassMappingError(
                f"no detector class {list(detector_names)[:10]} matches a refiner class {list(refiner_names)[:10]}; "
                f"{hint}use a refiner trained on the detector's classes, or pass --no-refine"
            )
        return cls(tuple(detector_names), tuple(refiner_names), table)

    def to_refiner(self, detector_class_ids: np.ndarray) -> np.ndarray:
        """Refiner class ids (int64, -1 = unknown to the refiner) for detector class ids."""
        return self.table[np.asarray(detector_class_ids, dtype=np.int64)]

    def describe(self) -> dict[str, str]:
        """For the run summary: each mapped detector class name -> refiner class name."""
        return {
            name: self.refiner_names[target] for name, target in zip(self.detector_names, self.table, strict=True) if target >= 0
        }
