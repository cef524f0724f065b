"""Timeouts: one thread per master watches the deadline of every running attempt."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymw_core.task import Attempt

_NOT_STARTED_RECHECK = 0.05  # seconds: an attempt queued on a busy worker has not begun
# Condition.wait() refuses a timeout past the platform's limit (OverflowError): a far
# deadline is slept towards in steps of at most this (a day), so a huge timeout is just late.
_LONGEST_WAIT = 86400.0
log = logging.getLogger("pymw")


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
        # Nothing may end this thread but stop(): every later timeout depends on it. An
        # error in one expiry is logged and the loop goes on with the next deadline.
        while True:
            try:
                attempt = self._next_due()
                if attempt is None:
                    return
                self._expire(attempt)
            except Exception:
                log.error("the timeout of a task could not be applied; later timeouts still "
                          "are", exc_info=True)

    def _next_due(self) -> Attempt | None:
        """Wait for the next attempt past its deadline; None once stopped."""
        with self._cond:
            while True:
                while not self._stopped:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    wait = (min(self._heap[0][0] - now, _LONGEST_WAIT) if self._heap
                            else None)
                    self._cond.wait(wait)
                if self._stopped:
                    return None
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
                return attempt
