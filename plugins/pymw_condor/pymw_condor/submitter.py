"""Batching: jobs handed over close together leave in one ``Schedd.submit`` (one cluster).

``execute_task`` only queues its job here and returns; one thread sends the queue once
no job has joined it for ``window`` seconds (so a loop of ``submit_task`` calls becomes
one submit), once ``limit`` are waiting, or ``MAX_WAIT_WINDOWS`` windows after the first
joined, whichever comes first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pymw_core.errors import InterfaceError

log = logging.getLogger("pymw.condor")
MAX_WAIT_WINDOWS = 20  # a steady trickle of jobs still leaves at least this often


class Batcher:
    """Collects items and passes them to ``submit`` in lists of at most ``limit``."""

    def __init__(self, submit: Callable[[list], None], window: float, limit: int,
                 failed: Callable[[list, BaseException], None] | None = None) -> None:
        """``failed(items, exc)`` hears of a ``submit`` that raised, so its items end."""
        self._submit = submit
        self._failed = failed
        self._window = window
        self._limit = limit
        self._cond = threading.Condition()
        self._pending: list[Any] = []
        self._since = 0.0  # when the oldest waiting item joined
        self._last = 0.0  # when the newest did
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pymw-condor-submit", daemon=True)
        self._thread.start()

    def add(self, item: Any) -> None:
        """Queue ``item`` for the next submit; InterfaceError once stopped."""
        with self._cond:
            if self._stopping:
                raise InterfaceError("the condor interface is closed")
            self._last = time.monotonic()
            if not self._pending:
                self._since = self._last
                self._cond.notify()
            self._pending.append(item)
            if len(self._pending) == self._limit:
                self._cond.notify()

    def discard(self, item: Any) -> bool:
        """Take ``item`` back if it has not left yet; False if it is being submitted or was."""
        with self._cond:
            try:
                self._pending.remove(item)
            except ValueError:
                return False
            return True

    def stop(self, timeout: float) -> list[Any]:
        """Stop; wait up to ``timeout`` s for a submit in progress; return what never left."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        with self._cond:
            left, self._pending = self._pending, []
        return left

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._pending and not self._stopping:
                    cond.wait()
                while not self._stopping and len(self._pending) < self._limit:
                    due = min(self._last + self._window,
                              self._since + self._window * MAX_WAIT_WINDOWS)
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    cond.wait(left)
                if self._stopping:
                    return
                batch = self._pending[: self._limit]
                del self._pending[: self._limit]
                # What is left has waited as long: it goes in the next round at once.
                self._last = self._since
            try:
                self._submit(batch)
            except Exception as exc:  # never kill this thread, never strand the items
                log.exception("submitting %d HTCondor jobs failed", len(batch))
                if self._failed is not None:
                    try:
                        self._failed(batch, exc)
                    except Exception:
                        log.exception("reporting the failed submit failed too")
