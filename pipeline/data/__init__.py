"""Data for demos and scoring: the synthetic scene generator and COCO AP helpers."""
