"""Timeouts: one thread per master watches every running task's deadline."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymw_core.task import Task


class Deadlines:
    """Calls ``expire(task, attempt)`` once a task's deadline passes (if still wanted)."""

    def __init__(self, expire: Callable[[Task, int], None]) -> None:
        self._expire = expire
        self._heap: list[tuple[float, int, Task, int]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def add(self, task: Task, seconds: float, attempt: int) -> None:
        with self._cond:
            if self._thread is None:  # most programs never set a timeout: no thread for them
                self._thread = threading.Thread(target=self._run, name="pymw-deadlines",
                                                daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._order), task,
                                        attempt))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                if self._stopped:
                    return
                _, order, task, attempt = heapq.heappop(self._heap)
                if task.done() or task.attempts != attempt:
                    continue
                # Interfaces that queue tasks on a worker move execute_time to the real
                # start; the timeout counts from there.
                if not task.execute_time:  # waiting behind another task on its worker
                    heapq.heappush(self._heap, (time.monotonic() + 0.05, order, task, attempt))
                    continue
                left = task.execute_time + (task.timeout or 0) - time.time()
                if left > 0.001:
                    heapq.heappush(self._heap, (time.monotonic() + left, order, task, attempt))
                    continue
            self._expire(task, attempt)
