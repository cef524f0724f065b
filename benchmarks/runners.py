"""The runners compared: PyMW's ``local`` interface and its peers, behind one small API.

Each runner is a context manager with ``submit(fn, *args) -> handle`` and
``result(handle) -> value``; the measurements in :mod:`measure` only use those two,
so every runner is timed doing exactly the same thing. :class:`RawPipe` is the floor:
a bare ``os.pipe`` pair between two processes, no pickling, no scheduling.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


# Forking a process that still runs other runners' threads can copy a lock held by one
# of them into the child, which then waits on it for ever (seen: multiprocessing.Pool
# hanging after PyMW's runner). A fork server forks from a clean, single-threaded process.
_CONTEXT = multiprocessing.get_context("forkserver")

class Runner:
    """A pool of ``workers`` processes that runs functions; subclasses fill in the three calls."""

    name = "runner"
    key = "runner"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this runner cannot run here (a missing package), else None."""
        return None

    def __enter__(self) -> Runner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        raise NotImplementedError

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def result(self, handle: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class PyMWLocal(Runner):
    """``Master("local", num_workers=...)``: persistent workers on pipes."""

    name = "pymw local"
    key = "pymw"

    def start(self) -> None:
        from pymw_core import Master

        self.master = Master("local", num_workers=self.workers)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.master.submit_task(fn, args)

    def result(self, handle: Any) -> Any:
        return self.master.get_result(handle)[1]

    def close(self) -> None:
        self.master.close()

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import pymw_local  # noqa: F401
        except ImportError as exc:
            return f"pymw-local is not installed ({exc})"
        return None


class ProcessPool(Runner):
    """``concurrent.futures.ProcessPoolExecutor``."""

    name = "ProcessPoolExecutor"
    key = "ppe"

    def start(self) -> None:
        self.executor = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=_CONTEXT)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.executor.submit(fn, *args)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class MultiprocessingPool(Runner):
    """``multiprocessing.Pool`` with ``apply_async``."""

    name = "multiprocessing.Pool"
    key = "pool"

    def start(self) -> None:
        self.pool = _CONTEXT.Pool(self.workers)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.apply_async(fn, args)

    def result(self, handle: Any) -> Any:
        return handle.get()

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


class Loky(Runner):
    """loky's reusable executor (joblib's process backend)."""

    name = "loky"
    key = "loky"

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import loky  # noqa: F401
        except ImportError as exc:
            return f"loky is not installed ({exc})"
        return None

    def start(self) -> None:
        import loky

        self.executor = loky.get_reusable_executor(max_workers=self.workers, reuse=False)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.executor.submit(fn, *args)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def close(self) -> None:
        self.executor.shutdown(wait=True, kill_workers=True)


class ProcessPerTask(Runner):
    """A Python process per task, files in and out: what PyMW 0.4's generic interface did.

    ``workers`` threads each start ``python per_task_worker.py IN OUT`` and wait for it.
    """

    name = "process per task"
    key = "per-task"

    def start(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="pymw-bench-pertask-")
        self.threads = concurrent.futures.ThreadPoolExecutor(self.workers)
        self.count = 0
        self.lock = threading.Lock()
        self.script = os.path.join(HERE, "per_task_worker.py")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self.lock:
            self.count += 1
            number = self.count
        return self.threads.submit(self._run, number, fn, args)

    def _run(self, number: int, fn: Callable[..., Any], args: tuple) -> Any:
        in_path = os.path.join(self.folder, f"{number}.in")
        out_path = os.path.join(self.folder, f"{number}.out")
        with open(in_path, "wb") as fh:
            pickle.dump((fn, args), fh, pickle.HIGHEST_PROTOCOL)
        subprocess.run([sys.executable, self.script, in_path, out_path], check=True,
                       cwd=HERE)
        with open(out_path, "rb") as fh:
            ok, value = pickle.load(fh)
        os.unlink(in_path)
        os.unlink(out_path)
        if not ok:
            raise value
        return value

    def result(self, handle: Any) -> Any:
        return handle.result()

    def close(self) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.folder, ignore_errors=True)


RUNNERS: tuple[type[Runner], ...] = (
    PyMWLocal, ProcessPool, MultiprocessingPool, Loky, ProcessPerTask,
)

# -- the floor ------------------------------------------------------------------------

_HEADER = struct.Struct("!Q")

_ECHO_CHILD = r"""
import os, struct, sys
r, w = int(sys.argv[1]), int(sys.argv[2])
header = struct.Struct("!Q")
buffer = bytearray(1 << 20)

def fill(view):
    got = 0
    while got < len(view):
        count = os.readv(r, [view[got:]])
        if not count:
            sys.exit(0)
        got += count

head = bytearray(8)
while True:
    fill(memoryview(head))
    (size,) = header.unpack(head)
    if size > len(buffer):
        buffer = bytearray(size)
    body = memoryview(buffer)[:size]
    fill(body)
    sent = os.writev(w, [head, body])
    while sent < 8 + size:  # only a signal cuts a blocking pipe write short
        rest = (bytes(head) + bytes(body))[sent:]
        sent += os.write(w, rest)
"""


class RawPipe:
    """A child process that echoes length-prefixed frames on a bare ``os.pipe`` pair.

    No pickling, no scheduling, no copies beyond the kernel's: the fastest a round
    trip or a megabyte can go between two processes on this machine.
    """

    name = "raw pipe"

    def __enter__(self) -> RawPipe:
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        self._child = subprocess.Popen(
            [sys.executable, "-c", _ECHO_CHILD, str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = bytearray(1 << 20)
        return self

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._w)
        self._child.wait(timeout=10)
        os.close(self._r)

    def round_trip(self, body: bytes) -> int:
        """Send ``body`` and read it back; returns the bytes received."""
        head = _HEADER.pack(len(body))
        frame = [head, body]
        total = 8 + len(body)
        sent = os.writev(self._w, frame)
        while sent < total:  # only a signal cuts a blocking pipe write short
            sent += os.write(self._w, (head + body)[sent:])
        self._fill(memoryview(bytearray(8)))
        if len(body) > len(self._buffer):
            self._buffer = bytearray(len(body))
        self._fill(memoryview(self._buffer)[: len(body)])
        return len(body)

    def _fill(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            count = os.readv(self._r, [view[got:]])
            if not count:
                raise EOFError("the echo child closed its pipe")
            got += count
