"""Frames in, detections in, results out: video sources, detectors and detection files, sinks, adapters."""
