"""The video app on top of the library: CLI, run wiring, stage threads, many-stream batching, demo, reports."""
