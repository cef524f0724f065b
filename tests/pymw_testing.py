"""The suite's own helpers: waits with deadlines, service requirements, environment
isolation, and in-process interfaces for the core's tests (real runtime, no processes)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pymw_core.unpack import deliver
from pymw_core.worker import Runtime

# -- the rules every test lives by ------------------------------------------------------

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(available: bool, what: str) -> None:
    """Skip when a real service is missing here; fail in CI, which must always have it.

    README.md's "Running the tests" says how to get each service.
    """
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what}: CI must provide it (scripts/run-tests installs it as root)")
    pytest.skip(f"{what}; see README.md, 'Running the tests'")


def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.02, fail: bool = True) -> Any:
    """Poll ``condition`` until it returns something true, at most ``timeout`` seconds.

    Returns that value. On time-out, fails the test saying what did not happen
    (or returns the last false value with ``fail=False``).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            if fail:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            return value
        time.sleep(interval)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without PyMW's settings (PYMW_*), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYMW_")}
    env.update(extra)
    return env


def processes_marked(key: str, value: str) -> list[tuple[int, str]]:
    """(pid, command line) of every other process whose environment has ``key=value``."""
    marker = f"{key}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # a zombie has ended; its parent has yet to reap it
        except OSError:
            continue
        found.append((int(entry), cmd))
    return found


def require_installed() -> None:
    """Fail unless PyMW comes from installed wheels, not the source tree (``-e`` hides gaps)."""
    import pymw_core

    where = os.path.realpath(pymw_core.__file__)
    if f"{os.sep}site-packages{os.sep}" not in where:
        pytest.fail(f"pymw_core was imported from {where}, not from an installed wheel: "
                    "run the suite with scripts/run-tests (nox -s tests)")


# -- in-process interfaces ---------------------------------------------------------------


class Inline:
    """Runs each task with the real worker runtime on the dispatch thread (blocking style)."""

    def __init__(self) -> None:
        self.runtime = Runtime(chdir=False)
        self.lock = threading.Lock()
        self.executed: list[tuple[Any, Any]] = []
        self.cleanups = 0

    def execute_task(self, task, worker):
        with self.lock:
            self.executed.append((task, worker))
            reply = self.runtime.run(task.payload.message(task.id))
        deliver(task, reply)

    def cleanup(self):
        self.cleanups += 1
        self.runtime.close()


class Workers(Inline):
    """Inline, with a fixed set of named workers and PyMW's optional hooks recorded."""

    def __init__(self, names=("a", "b")) -> None:
        super().__init__()
        self.free = list(names)
        self.calls: list[tuple[str, Any]] = []

    def get_available_workers(self):
        with self.lock:
            return list(self.free)

    def reserve_worker(self, worker):
        with self.lock:
            self.calls.append(("reserve", worker))
            self.free.remove(worker)

    def worker_finished(self, worker):
        with self.lock:
            self.calls.append(("finished", worker))
            self.free.append(worker)

    def get_status(self):
        return {"free": len(self.free)}


class Never:
    """Takes tasks and never finishes them: for close() and non-blocking tests."""

    def __init__(self) -> None:
        self.tasks: list[Any] = []
        self.cleanups = 0

    def execute_task(self, task, worker):
        self.tasks.append(task)

    def cleanup(self):
        self.cleanups += 1
