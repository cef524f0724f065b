"""A child process's own output, passed through to this process's stderr as it comes.

local's worker processes and mpi's self-launched job write their own diagnostics (a
crash report, Open MPI's messages) on a pipe, apart from what tasks print (that is
captured per task): the user sees them at once, and an error quotes their last lines.
"""

from __future__ import annotations

import sys
from collections.abc import MutableSequence
from typing import IO


def pass_through(stream: IO[bytes], tail: MutableSequence[str]) -> None:
    """Copy ``stream``'s lines to ``sys.stderr`` until it ends, appending each to ``tail``
    (a bounded ``deque``: the last lines, for an error message).

    A closed or broken stderr loses the line, never the thread: the pipe must be read to
    its end, or the child blocks writing to it.
    """
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        tail.append(line)
        try:
            sys.stderr.write(line)
        except (OSError, ValueError):
            pass
