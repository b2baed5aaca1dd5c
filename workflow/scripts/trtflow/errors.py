"""Errors trtflow expects, and how a stage reports them: one line that names the fix, exit status 1.

Bad input, a damaged or mismatched artifact, a missing tool: each such error class also derives from
`KnownError`, whose message already says what to do, so `run_stage` prints that line instead of a page
of (chained) tracebacks. TRTFLOW_TRACEBACK=1 prints the traceback as well. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable


class KnownError(Exception):
    """An expected failure whose message names the file or key and the fix."""


def run_stage(main: Callable[[], None]) -> None:
    try:
        main()
    except KnownError as err:
        if os.environ.get("TRTFLOW_TRACEBACK"):
            traceback.print_exc()
        sys.exit(f"error: {err}")
