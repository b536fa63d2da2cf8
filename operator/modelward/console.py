"""Writing the CLI's output so that a closed pipe ends it quietly.

``modelward check … | head`` closes the pipe after a few lines; Python then raises
``BrokenPipeError`` on the next write, and again when the interpreter flushes ``stdout`` at
exit, which prints a traceback. The reader chose to stop reading, so this is not an error:
the rest of the output goes to ``/dev/null`` and the command still exits with its verdict
(0, 1 or 2), which ``set -o pipefail`` can see.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO


def emit(text: str, *, stream: TextIO | None = None) -> None:
    """Write ``text`` and a newline, flushed; a closed reader is not an error."""
    out = stream or sys.stdout
    try:
        out.write(text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")
        out.flush()
    except BrokenPipeError:
        discard_output(out)


def discard_output(stream: TextIO) -> None:
    """Send everything still to be written to ``stream`` (and its buffer) to ``/dev/null``."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        fd = -1
    if fd >= 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    elif stream is sys.stdout:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (lives until exit)
    elif stream is sys.stderr:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (lives until exit)
