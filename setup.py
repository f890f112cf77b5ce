"""Packages plus the default models: engines/ and models/ ship inside the wheel as pipeline/_bundled/.

Why here and not in pyproject.toml: a package whose files live outside pipeline/ needs a
package_dir entry, and pyproject's `packages.find` cannot add such a package beside the ones it finds.
Only the files pipeline.model.defaults looks for are shipped (patterns below), about 22 MB with a float16 refiner.
"""

from setuptools import find_packages, setup

BUNDLED = {"pipeline._bundled.engines": "engines", "pipeline._bundled.models": "models"}
# REFINER_PATTERN of pipeline.model.defaults, and every committed detector (tests/test_packaging.py checks both).
BUNDLED_FILES = {"pipeline._bundled.engines": ["refiner-person-*.safetensors"], "pipeline._bundled.models": ["*.pt", "*.onnx"]}

setup(
    # The library and the app. train/, benchmarks/ and build_engine.py run from a checkout (they need its data).
    packages=[*find_packages(include=["pipeline", "pipeline.*"]), *BUNDLED],
    package_dir=BUNDLED,
    package_data=BUNDLED_FILES,
)
