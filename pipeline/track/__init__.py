"""--track: ids per stream (tracker), boxes that hold still (smoothing), refinements reused along tracks (reuse)."""
