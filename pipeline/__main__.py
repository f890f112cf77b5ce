"""`python -m pipeline --source SRC ...`: the app's CLI (pipeline.app.cli)."""

import sys

from pipeline.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
