"""In-process interfaces for the core's tests: real runtime, no processes, exact control."""

from __future__ import annotations

import threading
from typing import Any

from pymw_core.unpack import deliver
from pymw_core.worker import Runtime


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
