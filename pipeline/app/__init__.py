"""The video app on top of the library: CLI, the one run of one or many streams, stage threads, stream
batching, outputs, the summary, the demos and the synthetic-data command."""
