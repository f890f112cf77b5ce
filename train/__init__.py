"""Training BBRefinement refiners on any COCO-format dataset (`python -m train`)."""
