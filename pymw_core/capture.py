"""A task's output as a terminal would show it: file descriptors 1 and 2, not ``sys.stdout``.

For the life of a worker process, fds 1 and 2 are two unlinked temporary files (opened
``O_APPEND``, so the task, its C code and its child processes share one offset and
their writes land in order). While a task runs, ``sys.stdout``/``sys.stderr`` are
line-buffered text streams over them (``.buffer`` and ``fileno()`` work as on a
terminal); between tasks they are the worker's own stderr. At the end of a task each
file is read (at most :data:`CAP` bytes: the first and last halves, with a mark where
the middle was cut), decoded as UTF-8 with ``errors="replace"``, and emptied.

The worker's channel to the master is never fd 1 or 2 (see ``worker.main``), so
nothing a task writes can reach it.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any, TextIO

CAP = 8 * 1024 * 1024  # bytes of each stream kept per task
CUT_MARK = ("\n[pymw: {cut} bytes of output cut here: a task keeps the first and last "
            "{half} bytes]\n")


class FdCapture:
    """Owns fds 1 and 2 of this process; one task's output at a time."""

    def __init__(self, directory: str) -> None:
        """Make the two files; :meth:`install` puts them at fds 1 and 2. Made before the
        guardian forks, so that it can show a dead worker's last words (:meth:`tail`)."""
        self._fds = (_temporary(directory), _temporary(directory))
        self._streams: tuple[TextIO, TextIO] | None = None
        self._saved: tuple[TextIO, TextIO] | None = None
        self.own_stderr: TextIO | None = None

    def install(self) -> None:
        """Fds 1 and 2 of this process become the files; ``sys.stdout`` and ``sys.stderr``
        the worker's own stderr (what fd 2 was), which the interface passes on."""
        self.own_stderr = os.fdopen(os.dup(2), "w", buffering=1, errors="backslashreplace")
        for target, fd in zip((1, 2), self._fds, strict=True):
            os.dup2(fd, target)
        self._streams = (_text(1), _text(2))
        self._fflush = _c_fflush()
        sys.stdout = sys.stderr = self.own_stderr

    def tail(self, size: int = 4096) -> bytes:
        """The last ``size`` bytes the running task wrote to fd 2 (not yet taken)."""
        try:
            end = os.lseek(self._fds[1], 0, os.SEEK_END)
            return _read(self._fds[1], min(size, end), max(0, end - size))
        except OSError:
            return b""

    def begin(self) -> None:
        """A task starts: ``sys.stdout`` and ``sys.stderr`` write to fds 1 and 2."""
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = self._streams  # type: ignore[misc]

    def end(self) -> tuple[str, str]:
        """The task ended: its (stdout, stderr), both files emptied for the next one."""
        out, err = self._streams  # type: ignore[misc]
        for stream in (out, err):
            try:
                stream.flush()
            except (OSError, ValueError):  # the task closed it: replaced below
                pass
        if self._fflush is not None:
            self._fflush(None)  # C's stdio buffers: a terminal would have shown them
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None
        if out.closed or err.closed:  # the task closed sys.stdout: give the next a new one
            self._streams = (_text(1), _text(2))
        return _take(self._fds[0]), _take(self._fds[1])

    def repair(self) -> None:
        """Point fds 1 and 2 back at the files, should a task have moved them."""
        for target, fd in zip((1, 2), self._fds, strict=True):
            try:
                same = os.path.sameopenfile(target, fd)
            except OSError:
                same = False
            if not same:
                os.dup2(fd, target)


def _temporary(directory: str) -> int:
    with tempfile.TemporaryFile(dir=directory) as handle:  # unlinked: it goes with us
        fd = os.dup(handle.fileno())
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no O_APPEND to add
        return fd

    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
    return fd


class _Prompt(io.BufferedWriter):
    """A ``.buffer`` whose bytes leave at once: ``sys.stdout.buffer.write`` then
    ``os.write(1, ...)`` land in that order. Text stays line-buffered above it."""

    def write(self, data: Any) -> int:
        count = super().write(data)
        self.flush()
        return count


def _text(fd: int) -> TextIO:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(_Prompt(raw), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True)


def _take(fd: int) -> str:
    size = os.lseek(fd, 0, os.SEEK_END)
    if not size:
        return ""
    if size <= CAP:
        data = _read(fd, size, 0)
    else:
        half = CAP // 2
        mark = CUT_MARK.format(cut=size - 2 * half, half=half).encode()
        data = _read(fd, half, 0) + mark + _read(fd, half, size - half)
    os.ftruncate(fd, 0)
    return data.decode("utf-8", "replace")


def _read(fd: int, size: int, offset: int) -> bytes:
    parts = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _c_fflush() -> Callable[[None], int] | None:
    """C's ``fflush``, after making C's stdout line-buffered, as it is on a terminal (a
    file would make it fully buffered: ``printf`` lines would come after later ones)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        stdout = ctypes.c_void_p.in_dll(libc, "stdout")
        libc.setvbuf(stdout, None, 1, 0)  # _IOLBF
        return libc.fflush
    except (ImportError, OSError, AttributeError, ValueError):
        return None
