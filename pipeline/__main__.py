"""`python -m pipeline --source SRC ...`: the app's CLI (pipeline.app.cli)."""

import os
import sys

from pipeline.app.cli import main


def leave(code: int) -> None:
    """Exit without the interpreter's shutdown: by now the summary is written and the outputs are closed, and
    shutdown would wait for whatever a library still holds (a stage stuck in a call to a hung server, gRPC's
    channel to a stopped Triton server), which froze the exit for as long as the server stayed stopped."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    leave(main())
