"""`python -m pipeline --source SRC ...`: the app's CLI (pipeline.app.cli)."""

import os
import sys
import threading

from pipeline.app.cli import main
from pipeline.app.stages import THREAD_PREFIX


def exit_now_if_a_stage_is_stuck(code: int) -> None:
    """A stage still in a call after the run gave up on it (a hung server, a frozen camera) would hold the
    interpreter's exit for as long as the call lasts; the summary is written and the finished outputs are
    closed by now, so the process leaves at once."""
    if any(thread.name.startswith(THREAD_PREFIX) and thread.is_alive() for thread in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    exit_code = main()
    exit_now_if_a_stage_is_stuck(exit_code)
    sys.exit(exit_code)
