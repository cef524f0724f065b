"""The journal's cost: throughput with and without it, its size, and resuming from it.

``python benchmarks/bench_journal.py [repeats]`` measures, on this machine:

* **local throughput**: null tasks per second on ``local`` (2 workers), submit all then
  collect in order (as ``local-throughput``), with a journal and without, taking turns
  inside each repeat (a fresh journal file each time). Aim: with >= 0.85x without.
* **size of 1M tasks**: a journal holding one million finished null tasks (each with a
  submit, one attempt with its worker and host, a result), written through the
  journal's own writer (no workers: what is measured is the file). Aim: < 300 MB.
* **resume 100k**: a program whose 100,000 tasks the journal holds as finished, started
  again: every ``submit_task`` answered from the journal, every result collected.
  Aim: < 10 s. The journal is made by a master whose interface finishes each task in
  the master's own process (so that making it takes seconds, not minutes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = 2


class _Instant:
    """An interface that finishes every task at once, in the master (no runtime)."""

    def __init__(self) -> None:
        self.executed = 0

    def execute_task(self, task: Any, worker: Any) -> None:
        self.executed += 1
        task.task_finished(None, task.input_data[0])  # echo, without a worker


def _throughput(tasks: int, journal: str | None) -> float:
    from workloads import null

    from pymw_core import Master

    with Master("local", num_workers=WORKERS, journal=journal,
                journal_program="bench") as master:
        for task in [master.submit_task(null) for _ in range(200)]:  # warm: workers up
            master.get_result(task)
        started = time.perf_counter()
        handles = [master.submit_task(null) for _ in range(tasks)]
        for handle in handles:
            master.get_result(handle)
        return tasks / (time.perf_counter() - started)


def _size(tasks: int, folder: str) -> dict[str, float]:
    from pymw_core.journal import Journal

    path = os.path.join(folder, "size.db")
    journal = Journal(path, program="bench", interface="local", settings={})
    started = time.perf_counter()
    worker = "local worker 1 pid=123456"
    now = time.time()
    for i in range(1, tasks + 1):
        entry = journal.entry(i, hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest(),
                              "null", None)  # random keys, as real ones are
        journal.submitted(entry, now)
        journal.started(entry, i, 1, worker, now)
        journal.ended(entry.row, i, "ok", None, "finished", now, (None, None, "", ""))
        if i % 50_000 == 0:
            journal.sync()  # keep the queue short, as a run's pace would
    journal.sync()
    seconds = time.perf_counter() - started
    journal.close()
    size = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)
               if n.startswith("size.db"))
    return {"mb": size / 1e6, "write_seconds": seconds}


def _resume(tasks: int, folder: str) -> dict[str, float]:
    from workloads import echo

    from pymw_core import Master

    path = os.path.join(folder, "resume.db")
    started = time.perf_counter()
    with Master(_Instant(), journal=path, journal_program="bench") as master:
        handles = [master.submit_task(echo, (i,)) for i in range(tasks)]
        for handle in handles:
            master.get_result(handle)
    made = time.perf_counter() - started
    interface = _Instant()
    started = time.perf_counter()
    with Master(interface, journal=path, journal_program="bench") as master:
        handles = [master.submit_task(echo, (i,)) for i in range(tasks)]
        results = [master.get_result(h)[1] for h in handles]
    resumed = time.perf_counter() - started
    if interface.executed or results != list(range(tasks)):
        raise AssertionError(f"resume ran {interface.executed} tasks or lost results")
    return {"resume_seconds": resumed, "make_seconds": made}


def _best(values: list[float], higher: bool) -> dict[str, float]:
    best, worst = (max(values), min(values)) if higher else (min(values), max(values))
    return {"best": best, "spread_pct": abs(worst - best) / best * 100, "repeats": len(values)}


def run(repeats: int = 3, tasks: int = 20_000, size_tasks: int = 1_000_000,
        resume_tasks: int = 100_000) -> dict:
    """Measure; the best of ``repeats`` for throughput (turns taken), one run of the rest."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    try:
        import pymw_local  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"pymw-local is not installed ({exc})"}
    folder = tempfile.mkdtemp(prefix="pymw-bench-journal-")
    try:
        without: list[float] = []
        with_journal: list[float] = []
        for repeat in range(repeats):
            without.append(_throughput(tasks, None))
            with_journal.append(_throughput(tasks, os.path.join(folder, f"t{repeat}.db")))
        plain, journaled = _best(without, True), _best(with_journal, True)
        size = _size(size_tasks, folder)
        resume = _resume(resume_tasks, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = [
        {"measure": f"local null tasks/s, {tasks} tasks, no journal",
         "value": round(plain["best"]), "spread_pct": round(plain["spread_pct"], 1)},
        {"measure": f"local null tasks/s, {tasks} tasks, with a journal",
         "value": round(journaled["best"]), "spread_pct": round(journaled["spread_pct"], 1)},
        {"measure": f"journal of {size_tasks} finished tasks, MB",
         "value": round(size["mb"], 1), "spread_pct": "-"},
        {"measure": "writing it through the writer, s",
         "value": round(size["write_seconds"], 1), "spread_pct": "-"},
        {"measure": f"resume {resume_tasks} finished tasks (submit + get_result), s",
         "value": round(resume["resume_seconds"], 2), "spread_pct": "-"},
    ]
    return {
        "rows": rows,
        "throughput_ratio": journaled["best"] / plain["best"],
        "size_mb": size["mb"],
        "resume_seconds": resume["resume_seconds"],
        "samples": {"without": without, "with": with_journal},
    }


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    from report import print_result

    print_result("journal", run(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
