"""Timeouts: one thread per master watches the deadline of every running attempt."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymw_core.task import Attempt

_NOT_STARTED_RECHECK = 0.05  # seconds: an attempt queued on a busy worker has not begun


class Deadlines:
    """Calls ``expire(attempt)`` once an attempt ran ``seconds`` (if it is still current).

    The clock starts when the attempt began on its worker (``attempt.started_at``), not
    when it was handed over: a task waiting behind another on the same worker is not
    charged for the wait.
    """

    def __init__(self, expire: Callable[[Attempt], None]) -> None:
        self._expire = expire
        self._heap: list[tuple[float, int, Attempt, float]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def add(self, attempt: Attempt, seconds: float) -> None:
        with self._cond:
            if self._thread is None:  # most programs never set a timeout: no thread for them
                self._thread = threading.Thread(target=self._run, name="pymw-deadlines",
                                                daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._order), attempt,
                                        seconds))
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
                _, order, attempt, seconds = heapq.heappop(self._heap)
                if not attempt.current:
                    continue
                if not attempt.started_at:  # still waiting behind another task on its worker
                    heapq.heappush(self._heap, (time.monotonic() + _NOT_STARTED_RECHECK, order,
                                                attempt, seconds))
                    continue
                left = attempt.started_at + seconds - time.time()
                if left > 0.001:
                    heapq.heappush(self._heap, (time.monotonic() + left, order, attempt, seconds))
                    continue
            self._expire(attempt)
