"""Pure-numpy types, geometry, spec and errors: imported by everything, imports nothing else of pipeline."""
