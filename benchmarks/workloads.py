"""The tasks every runner runs: the same functions, importable by every kind of worker.

They live in their own module so that pools that pickle by reference
(``multiprocessing``, ``concurrent.futures``, the process-per-task runner) find them
by name, and PyMW ships them by value as it does any user code.
"""

from __future__ import annotations

import time


def null() -> None:
    """No work at all: what is left is the runner's own cost per task."""
    return None


def echo(data: bytes) -> bytes:
    """Send the payload back: it crosses the transport both ways."""
    return data


def spin(loops: int) -> int:
    """Pure-Python CPU work that holds the GIL (no sleeping, no C loops)."""
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def block(seconds: float) -> None:
    """Keep a worker busy, so tasks submitted behind it stay queued on the master."""
    time.sleep(seconds)


def calibrate_spin(seconds: float) -> int:
    """Loops of :func:`spin` that take about ``seconds`` here, in this process."""
    loops = 20_000
    while True:
        started = time.perf_counter()
        spin(loops)
        took = time.perf_counter() - started
        if took > 0.05 or loops > 50_000_000:
            return max(1, int(loops * seconds / took))
        loops *= 4
