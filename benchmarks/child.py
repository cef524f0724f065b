"""Measurements that need a fresh process: the master's memory, its cost as tasks grow
and as workers grow.

``python child.py memory KIND TASKS [--trace]``, ``python child.py scaling TASKS
REPEATS`` and ``python child.py workers COUNT TASKS REPEATS`` print one JSON line. A
fresh interpreter per size keeps a million queued tasks from one measurement out of
the heap, the garbage collector and the RSS of the next.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from workloads import block, echo

BLOCK_SECONDS = 600.0  # longer than any measurement; the workers are killed after it


class NeverRuns:
    """An interface whose ``execute_task`` accepts a task and never runs it."""

    def execute_task(self, task: Any, worker: Any) -> None:
        pass


class Immediate:
    """An in-process interface that completes each task as it is handed over.

    Only the master's own work remains: submit, queue, match, dispatch, complete, hand out.
    """

    blocking_execute = False

    def execute_task(self, task: Any, worker: Any) -> None:
        task.task_finished(None, None)


class Simulated:
    """``workers`` simulated workers in this process: PyMW's worker hooks, no processes.

    ``execute_task`` hands the task to one completer thread that finishes it at once,
    as a worker would report a null task done; the free workers sit in a dict, so the
    interface's own cost per task does not grow with their number (beyond the list
    ``get_available_workers`` returns once per matching round).
    """

    blocking_execute = False

    def __init__(self, workers: int) -> None:
        import queue
        import threading

        self.lock = threading.Lock()
        self.free = dict.fromkeys(range(workers))
        self.default_max_in_flight = workers
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._complete, daemon=True).start()

    def get_available_workers(self) -> list[int]:
        with self.lock:
            return list(self.free)

    def reserve_worker(self, worker: int) -> None:
        with self.lock:
            del self.free[worker]

    def worker_finished(self, worker: int) -> None:
        with self.lock:
            self.free[worker] = None

    def execute_task(self, task: Any, worker: Any) -> None:
        self._done.put(task)

    def _complete(self) -> None:
        get = self._done.get
        while True:
            get().task_finished(None, None)


def rss() -> int:
    """This process's resident set size in bytes, now."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _pymw_never() -> tuple[Callable[..., Any], Callable[[], None]]:
    from pymw_core import Master

    master = Master(NeverRuns())
    return (lambda i: master.submit_task(echo, (i,))), master.close


def _pymw_local_busy() -> tuple[Callable[..., Any], Callable[[], None]]:
    from pymw_core import Master

    master = Master("local", num_workers=2)
    slots = 2 * master.interface.num_workers  # a running task and one queued behind, each
    for _ in range(2 * slots):
        master.submit_task(block, (BLOCK_SECONDS,))
    _settle(lambda: master.get_status()["running"] >= slots)
    return (lambda i: master.submit_task(echo, (i,))), master.close


def _ppe_busy() -> tuple[Callable[..., Any], Callable[[], None]]:
    from concurrent.futures import ProcessPoolExecutor

    executor = ProcessPoolExecutor(2)
    blockers = [executor.submit(block, BLOCK_SECONDS) for _ in range(3)]
    _settle(lambda: sum(f.running() for f in blockers) >= 2)

    def close() -> None:
        for process in list(executor._processes.values()):  # nothing public stops a busy one
            process.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    return (lambda i: executor.submit(echo, i)), close


def _pool_busy() -> tuple[Callable[..., Any], Callable[[], None]]:
    import multiprocessing

    pool = multiprocessing.Pool(2)
    for _ in range(2):
        pool.apply_async(block, (BLOCK_SECONDS,))
    time.sleep(0.5)

    def close() -> None:
        pool.terminate()
        pool.join()

    return (lambda i: pool.apply_async(echo, (i,))), close


MEMORY_KINDS = {
    "pymw-never": _pymw_never,
    "pymw-local-busy": _pymw_local_busy,
    "ppe-busy": _ppe_busy,
    "pool-busy": _pool_busy,
}


def _settle(ready: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # let the pool's own threads go quiet before the baseline


def memory(kind: str, tasks: int, trace: bool) -> dict[str, float]:
    """Bytes of the master per task with ``tasks`` queued behind busy (or absent) workers."""
    submit, close = MEMORY_KINDS[kind]()
    try:
        gc.collect()
        before = rss()
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        handles = [submit(i) for i in range(tasks)]
        seconds = time.perf_counter() - started
        gc.collect()
        after = rss()
        traced = tracemalloc.get_traced_memory()[0] if trace else 0
        tracemalloc.stop()
        result = {
            "rss_bytes_per_task": (after - before) / tasks,
            "submit_us": seconds / tasks * 1e6,
        }
        if trace:
            result["traced_bytes_per_task"] = traced / tasks
        del handles
        return result
    finally:
        close()


def scaling(tasks: int, repeats: int) -> list[dict[str, float]]:
    """Per-task cost of submitting ``tasks`` and handing out every result, fresh masters."""
    from workloads import null

    from pymw_core import Master

    runs = []
    for _ in range(repeats):
        with Master(Immediate()) as master:
            for _ in range(100):
                master.get_result(master.submit_task(null))
            gc.collect()
            started = time.perf_counter()
            for _ in range(tasks):
                master.submit_task(null)
            submitted = time.perf_counter()
            for _ in range(tasks):
                master.get_result()
            ended = time.perf_counter()
        runs.append({
            "submit_us": (submitted - started) / tasks * 1e6,
            "total_us": (ended - started) / tasks * 1e6,
        })
        gc.collect()
    return runs


def workers(count: int, tasks: int, repeats: int) -> list[dict[str, float]]:
    """Null tasks through ``count`` simulated workers: tasks/s and the process's CPU per task.

    The CPU is this whole process's (the master's threads and the one completer thread
    that stands in for the workers), so it is the master's cost plus a constant.
    """
    from workloads import null

    from pymw_core import Master

    runs = []
    for _ in range(repeats):
        with Master(Simulated(count), max_in_flight=count) as master:
            for _ in range(100):
                master.get_result(master.submit_task(null))
            gc.collect()
            cpu = time.process_time()
            started = time.perf_counter()
            for _ in range(tasks):
                master.submit_task(null)
            for _ in range(tasks):
                master.get_result()
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
        runs.append({"tasks_per_s": tasks / seconds, "cpu_us": cpu / tasks * 1e6})
        gc.collect()
    return runs


def stream(tasks: int, window: int, marks: list[int]) -> dict[str, Any]:
    """``tasks`` null tasks through ``as_completed``, at most ``2 * window`` submitted and
    not yet handed out; the master's RSS after each of ``marks`` claimed tasks."""
    from workloads import null

    from pymw_core import Master

    rows = []
    with Master("local", num_workers=2) as master:
        for _ in range(200):
            master.get_result(master.submit_task(null))
        gc.collect()
        start_rss = rss()
        started = time.perf_counter()
        claimed = 0
        wanted = sorted(marks)
        ahead = [master.submit_task(null) for _ in range(min(window, tasks))]
        submitted = len(ahead)
        while ahead:
            # The next window is on its way while this one is collected: no bubble.
            size = min(window, tasks - submitted)
            following = [master.submit_task(null) for _ in range(size)]
            submitted += size
            for _ in master.as_completed(ahead):
                claimed += 1
                if wanted and claimed == wanted[0]:
                    wanted.pop(0)
                    rows.append({"claimed": claimed, "rss_mb": rss() / 2**20,
                                 "seconds": time.perf_counter() - started})
            ahead = following
        seconds = time.perf_counter() - started
    return {"tasks": tasks, "window": window, "tasks_per_s": tasks / seconds,
            "start_rss_mb": start_rss / 2**20, "marks": rows}


def worker_functions(count: int, marks: list[int]) -> dict[str, Any]:
    """The worker's RSS as ``count`` distinct functions (one task each) pass through it."""
    from pymw_core import Master

    rows = []
    wanted = sorted(marks)
    with Master("local", num_workers=1) as master:
        pid = master.get_status()["pids"][0]
        namespace: dict[str, Any] = {}
        started = time.perf_counter()
        for done in range(1, count + 1):
            exec(f"def f{done % 7}(x):\n    return x + {done}\n", namespace)
            function = namespace[f"f{done % 7}"]
            master.get_result(master.submit_task(function, (1,)))
            if wanted and done == wanted[0]:
                wanted.pop(0)
                with open(f"/proc/{pid}/statm") as fh:
                    worker_rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                rows.append({"functions": done, "worker_rss_mb": worker_rss / 2**20,
                             "seconds": time.perf_counter() - started})
    return {"functions": count, "marks": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    mem = commands.add_parser("memory")
    mem.add_argument("kind", choices=sorted(MEMORY_KINDS))
    mem.add_argument("tasks", type=int)
    mem.add_argument("--trace", action="store_true", help="also count with tracemalloc")
    scale = commands.add_parser("scaling")
    scale.add_argument("tasks", type=int)
    scale.add_argument("repeats", type=int)
    sim = commands.add_parser("workers")
    sim.add_argument("count", type=int)
    sim.add_argument("tasks", type=int)
    sim.add_argument("repeats", type=int)
    flow = commands.add_parser("stream")
    flow.add_argument("tasks", type=int)
    flow.add_argument("window", type=int)
    flow.add_argument("marks", type=int, nargs="+")
    fns = commands.add_parser("functions")
    fns.add_argument("count", type=int)
    fns.add_argument("marks", type=int, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "memory":
        answer: Any = memory(args.kind, args.tasks, args.trace)
    elif args.command == "stream":
        answer = stream(args.tasks, args.window, args.marks)
    elif args.command == "workers":
        answer = workers(args.count, args.tasks, args.repeats)
    elif args.command == "functions":
        answer = worker_functions(args.count, args.marks)
    else:
        answer = scaling(args.tasks, args.repeats)
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
