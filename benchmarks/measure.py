"""One measurement each: what is timed, and nothing else.

Every function takes a started runner (or the raw pipe) and returns plain numbers;
repeating, interleaving the runners and summarising is :mod:`run`'s job.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from runners import RawPipe, Runner
from workloads import block, echo, null, spin

MB = 1_000_000


def warm_up(runner: Runner) -> None:
    """Start every worker and let each see every function once (caches, imports, forks)."""
    handles = []
    for _ in range(2 * runner.workers):
        handles += [runner.submit(null), runner.submit(echo, b"x"), runner.submit(spin, 10)]
    for handle in handles:
        runner.result(handle)


def throughput(runner: Runner, tasks: int) -> float:
    """Null tasks per second: submit ``tasks``, then collect every result (in order)."""
    started = time.perf_counter()
    handles = [runner.submit(null) for _ in range(tasks)]
    for handle in handles:
        runner.result(handle)
    return tasks / (time.perf_counter() - started)


def latency(runner: Runner, trips: int) -> list[float]:
    """Seconds of each of ``trips`` sequential round trips of one null task."""
    times = []
    clock = time.perf_counter
    for _ in range(trips):
        started = clock()
        runner.result(runner.submit(null))
        times.append(clock() - started)
    return times


def payload(runner: Runner, tasks: int, size: int = MB) -> float:
    """MB/s moved by ``tasks`` echo tasks of ``size`` bytes (counted both ways)."""
    data = b"\x5a" * size
    started = time.perf_counter()
    handles = [runner.submit(echo, data) for _ in range(tasks)]
    for handle in handles:
        if len(runner.result(handle)) != size:
            raise AssertionError("the echo came back short")
    return 2 * tasks * size / MB / (time.perf_counter() - started)


def cpu_bound(runner: Runner, tasks: int, loops: int) -> float:
    """Seconds for ``tasks`` CPU-bound tasks of ``loops`` each, run at once."""
    started = time.perf_counter()
    handles = [runner.submit(spin, loops) for _ in range(tasks)]
    for handle in handles:
        runner.result(handle)
    return time.perf_counter() - started


def cpu_serial(tasks: int, loops: int) -> float:
    """The same work in this process, one task after another: the speed-up's baseline."""
    started = time.perf_counter()
    for _ in range(tasks):
        spin(loops)
    return time.perf_counter() - started


def pipe_latency(pipe: RawPipe, trips: int, size: int = 64) -> list[float]:
    """Seconds of each raw-pipe round trip of a ``size``-byte frame (a null task's order)."""
    body = b"\x5a" * size
    times = []
    clock = time.perf_counter
    for _ in range(20):
        pipe.round_trip(body)
    for _ in range(trips):
        started = clock()
        pipe.round_trip(body)
        times.append(clock() - started)
    return times


def pipe_payload(pipe: RawPipe, messages: int, size: int = MB) -> float:
    """MB/s of ``messages`` raw-pipe echoes of ``size`` bytes (counted both ways)."""
    body = b"\x5a" * size
    pipe.round_trip(body)
    started = time.perf_counter()
    for _ in range(messages):
        pipe.round_trip(body)
    return 2 * messages * size / MB / (time.perf_counter() - started)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def latency_summary(times: list[float]) -> dict[str, float]:
    """Median and p99 in microseconds."""
    return {
        "median_us": statistics.median(times) * 1e6,
        "p99_us": percentile(times, 0.99) * 1e6,
    }


def busy_workers(runner: Runner, seconds: float) -> list[Any]:
    """Occupy every slot of ``runner`` so that what is submitted next stays queued."""
    return [runner.submit(block, seconds) for _ in range(2 * runner.workers)]
