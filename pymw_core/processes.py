"""Whether a process of this host is still there: one answer for the view (is the
journal's master alive?) and the contract kit (did the stopped task's process end?)."""

from __future__ import annotations

import os


def pid_gone(pid: int) -> bool:
    """True once ``pid`` is no live process of this host: it does not exist, or it is a
    zombie (ended, not yet reaped by its parent). A pid reused by another process reads
    as live."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        pass  # someone else's process, or no pid at all: not known to be gone
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        # Gone between the two looks; without /proc, kill's answer stands.
        return os.path.isdir("/proc")
