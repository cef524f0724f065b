"""The set-up bench_condor and bench_slurm share: a private service from the test suite
(tests/condor/pool.py, tests/slurm/cluster.py), started for one measurement and stopped."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")


def on_service(module: str, make: str, measure: Callable[[Any, int], dict], repeats: int,
               **options: Any) -> dict:
    """``measure(service, repeats)`` on a started ``module.make(**options)``, with this
    process as its client; ``{"skipped": reason}`` where the service cannot run here."""
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    found = importlib.import_module(module)
    reason = found.missing_requirements()
    if reason:
        return {"skipped": reason}
    service = getattr(found, make)(**options)
    service.start()
    try:
        with service.as_client():
            return measure(service, repeats)
    finally:
        service.stop()


def wait(predicate: Callable[[], Any], timeout: float, what: str,
         interval: float = 0.01) -> None:
    """Poll ``predicate`` until true; RuntimeError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
