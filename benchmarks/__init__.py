"""Benchmarks of the real pipeline code: `python -m benchmarks latency|fps|accuracy`.

Each subcommand measures through the same modules the runtime uses (pipeline.refine.crops, geometry,
backends, refine, run), so a number here is a number the product delivers, and writes a JSON +
markdown report naming the machine, the library versions and the exact command.
"""
