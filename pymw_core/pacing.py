"""How many tasks to keep on one streaming worker: its running task and a few behind it.

Queued on the worker, tiny tasks never wait for the master between them; kept in the
master's queue, long ones go to whichever worker frees up first. The adaptive depth
follows the pace at which a worker finishes tasks back to back: enough queued to
cover about ``PIPELINE_SECONDS`` of its work, at least one, at most ``MAX_PREFETCH``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

PIPELINE_SECONDS = 0.002
MAX_PREFETCH = 8


class PacedWorker:
    """A worker's slots: ``depth`` tasks at once, ``in_flight`` of them taken.

    ``prefetch`` fixes the tasks queued behind the running one; None adapts it. The
    owner (an interface) guards these fields with its own lock.
    """

    def __init__(self, prefetch: int | None) -> None:
        self.adaptive = prefetch is None
        self.depth = 1 + (1 if prefetch is None else prefetch)
        self.in_flight = 0
        self.pace: float | None = None  # seconds between back-to-back completions (EWMA)
        self._last_done = 0.0
        self._streak = False  # the last completion left work queued: the worker stayed busy

    @property
    def free(self) -> int:
        """Tasks this worker can take now."""
        return self.depth - self.in_flight

    def finished(self, now: float) -> None:
        """One task came back at ``now`` (monotonic seconds): update the pace and the depth."""
        if self._streak:
            gap = now - self._last_done
            self.pace = gap if self.pace is None else self.pace + 0.2 * (gap - self.pace)
            if self.adaptive:
                wanted = math.ceil(PIPELINE_SECONDS / max(self.pace, 1e-6))
                self.depth = 1 + min(MAX_PREFETCH, max(1, wanted))
        self.in_flight -= 1
        self._last_done = now
        self._streak = self.in_flight > 0


W = TypeVar("W", bound=PacedWorker)


def spread(workers: Iterable[W]) -> list[W]:
    """Every free slot of ``workers``, least busy first: each worker once per slot.

    An idle worker's slot comes before a busy one's, whatever the depths: a worker whose
    adaptive depth grew on tiny tasks has more free slots than a fresh one, yet a task
    sent there waits behind the running one. Workers equally busy keep the given order.
    Called once per matching round: one pass per depth level, no sort of the slots.
    """
    ready = sorted((w for w in workers if w.free > 0), key=_busy)
    if not ready:
        return []
    slots: list[W] = []
    for level in range(ready[0].in_flight, max(w.depth for w in ready)):
        for worker in ready:
            if worker.in_flight > level:
                break  # sorted by in_flight: the rest are busier still
            if level < worker.depth:
                slots.append(worker)
    return slots


def _busy(worker: PacedWorker) -> int:
    return worker.in_flight
