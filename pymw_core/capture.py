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

A runtime that shares its process with another program (an in-process interface's
threads) cannot own fds 1 and 2: :func:`begin_thread_capture` takes what the task's own
thread writes to ``sys.stdout``/``sys.stderr`` instead, each running task its own.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
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


def begin_thread_capture() -> tuple[_Router, _Router]:
    """A task starts on this thread, in a process other tasks may share: its writes to
    ``sys.stdout``/``sys.stderr`` are kept from here on. Pass what this returns to
    :func:`end_thread_capture`.

    Swapping the process-wide streams for buffers per task broke when two tasks ran at
    once: the second saved the first's buffer as "the stream" and put it back last, so
    the program's own prints went into a dead buffer for good. Instead, while any task
    runs, both streams are :class:`_Router` objects: a task thread's writes go to its
    own buffer, every other thread's to the stream that was there before, which comes
    back when the last task ends. (Threads a task starts write to that stream too.)
    Nothing is kept between the two calls but what this returns, so one runtime may run
    tasks on several threads at once.
    """
    ident = threading.get_ident()
    routers = []
    with _ROUTING:
        for name in _STREAMS:
            router = getattr(sys, name)
            if not isinstance(router, _Router):
                router = _Router(router)
                setattr(sys, name, router)
            router.buffers.setdefault(ident, []).append(io.StringIO())
            routers.append(router)
    return routers[0], routers[1]


def end_thread_capture(routers: tuple[_Router, _Router]) -> tuple[str, str]:
    """The task on this thread ended: its (stdout, stderr); the streams are the
    program's again once no task of this process runs."""
    ident = threading.get_ident()
    texts = []
    with _ROUTING:
        for name, router in zip(_STREAMS, routers, strict=True):
            stack = router.buffers[ident]
            texts.append(stack.pop().getvalue())
            if not stack:
                del router.buffers[ident]
            if not router.buffers and getattr(sys, name) is router:
                setattr(sys, name, router.stream)
    return texts[0], texts[1]


_ROUTING = threading.Lock()  # taken to put routers in place, or back
_STREAMS = ("stdout", "stderr")


class _Router:
    """``sys.stdout`` or ``sys.stderr`` while tasks run in threads: writes go by thread."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.buffers: dict[int, list[io.StringIO]] = {}  # thread -> its tasks (nested runs)

    def _target(self) -> Any:
        stack = self.buffers.get(threading.get_ident())
        return stack[-1] if stack else self.stream

    def write(self, text: str) -> int:
        return self._target().write(text)

    def writelines(self, lines: Any) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno...: the target's
        return getattr(self._target(), name)


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
