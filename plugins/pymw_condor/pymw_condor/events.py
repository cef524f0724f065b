"""Progress: one job event log per run, followed on one thread.

HTCondor appends every job's submit, execute, termination, hold, eviction and removal to
the run's log; PyMW reads that file instead of asking the schedd about each task. The
bindings' own waits are whole seconds and cannot be interrupted, so the follower polls
(``stop_after=0``) and sleeps on an Event: it reacts within ``poll`` seconds and stops at once.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

import htcondor2

log = logging.getLogger("pymw.condor")


class EventFollower:
    """Hands each event of the log at ``path`` to ``handle``, on a thread of its own."""

    def __init__(self, path: str, handle: Callable[[Any], None], poll: float,
                 tick: Callable[[], None] | None = None) -> None:
        # The file must exist first: opened on a missing log, the reader never sees events.
        self._log = htcondor2.JobEventLog(path)
        self._handle = handle
        self._tick = tick  # called once a round, for what is due after a delay
        self._poll = poll
        self._stop = threading.Event()
        self._again: collections.deque[Callable[[], None]] = collections.deque()
        self._thread = threading.Thread(target=self._run, name="pymw-condor-events", daemon=True)
        self._thread.start()

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the follower's thread, before the next events are handled."""
        self._again.append(fn)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following and close the log."""
        self._stop.set()
        self._thread.join(timeout)

    def _dispatch(self, handle: Callable[..., None], *args: Any) -> None:
        try:
            handle(*args)
        except Exception:
            log.exception("handling HTCondor events failed (%s)", args or handle)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                seen = False
                while self._again:
                    seen = True
                    self._dispatch(self._again.popleft())
                try:
                    for event in self._log.events(stop_after=0):
                        seen = True
                        self._dispatch(self._handle, event)
                except Exception:
                    log.exception("reading the job event log failed; retrying")
                if self._tick is not None:
                    self._dispatch(self._tick)
                if not seen:
                    self._stop.wait(self._poll)
        finally:
            self._log.close()
