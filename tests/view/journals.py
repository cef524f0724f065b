"""Journals for the view's tests, written through pymw_core.journal's own writer.

The writer is the one a master uses (``Journal``: entry, submitted, started, ended),
so the view reads exactly what a master writes. Two
things a test cannot wait for are set by hand afterwards, each said where it happens:
a run's start moved back so a sample has a history, and a dead master's heartbeat
made old.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass

from pymw_core.errors import RemoteTraceback
from pymw_core.journal import Entry, Journal

PROGRAM = "/home/me/simulate.py"
SETTINGS = {"max_attempts": 3, "num_workers": 3, "resume": "finished", "timeout": None}


@dataclass
class Worker:
    """What the journal's ``worker_label`` reads: a label and a host."""

    label: str
    host: str = "node1"

    @property
    def host_name(self) -> str:
        return self.host

    def __str__(self) -> str:
        return self.label


def error_with_traceback(text: str) -> ValueError:
    """A task's exception as the master holds it: the worker's traceback as its cause."""
    exc = ValueError(text)
    exc.__cause__ = RemoteTraceback(
        "Traceback (most recent call last):\n  File \"simulate.py\", line 12, in step\n"
        f"    raise ValueError({text!r})\nValueError: {text}\n")
    return exc


class Writer:
    """A master's view of its journal, minus the master: tasks, attempts, results."""

    def __init__(self, path: str | os.PathLike, settings: dict | None = None) -> None:
        self.journal = Journal(path, program=PROGRAM, interface="local",
                               settings=settings or SETTINGS)
        self.path = str(path)
        self.tasks = 0
        self.attempts = 0

    def task(self, name: str, when: float) -> Entry:
        self.tasks += 1
        entry = self.journal.entry(self.tasks, os.urandom(16).hex(), name, None)
        self.journal.submitted(entry, when)
        return entry

    def start(self, entry: Entry, worker: str, when: float, number: int = 1) -> int:
        self.attempts += 1
        self.journal.started(entry, self.attempts, number, Worker(worker), when)
        return self.attempts

    def lost(self, entry: Entry, attempt: int, when: float, why: str) -> None:
        """The worker vanished: the attempt ends, the task goes back to the queue."""
        self.journal.ended(entry.row, attempt, "lost", why, "queued", when, None)

    def end(self, entry: Entry, attempt: int, when: float, error: BaseException | None = None,
            value: object = None, stdout: str = "", stderr: str = "") -> None:
        """The attempt's end and the task's: ok with ``value``, or failed with ``error``."""
        detail = None if error is None else f"{type(error).__name__}: {error}"
        self.journal.ended(entry.row, attempt, "ok" if error is None else "error", detail,
                           "finished" if error is None else "failed", when,
                           (error, value, stdout, stderr))

    def sync(self) -> None:
        self.journal.sync(timeout=60)

    def close(self) -> None:
        self.journal.close()


def written(path: str | os.PathLike, tasks: int, timeout: float = 30.0) -> None:
    """Wait until the journal holds ``tasks`` tasks: the writer holds a new task that has
    not ended for up to a second (to write it once, in its final state)."""
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            have = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
        finally:
            conn.close()
        if have >= tasks:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the journal holds {have} tasks, not {tasks}, after "
                                 f"{timeout} s")
        time.sleep(0.05)


def backdate(path: str | os.PathLike, started: float, ended: float | None = None) -> None:
    """Move the last run's start back to ``started`` (the writer stamps its own clock, and
    a sample's history begins before the test did), and its end to ``ended`` if given
    (a synthetic run's end, not the time its writing took)."""
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=30)
    try:
        conn.execute("UPDATE runs SET started = ? WHERE id = (SELECT max(id) FROM runs)",
                     (started,))
        if ended is not None:
            conn.execute("UPDATE runs SET ended = ?, heartbeat = ?"
                         " WHERE id = (SELECT max(id) FROM runs)", (ended, ended))
    finally:
        conn.close()


def write_sample(w: Writer, now: float, live: bool) -> dict:
    """3 workers, 40 tasks of two functions ending over ~27 s from ``now - 100``: 3 fail
    with tracebacks and output, one is retried after a lost worker; when ``live``, 2 more
    are running and 5 queued."""
    t0 = now - 100.0
    failed, lost = [], []
    workers = ["local-0", "local-1", "local-2"]
    clocks = dict.fromkeys(workers, t0 + 1.0)
    for i in range(40):
        name = "simulate.step" if i % 4 else "simulate.reduce"
        worker = workers[i % 3]
        start = clocks[worker]
        took = 2.0 if name == "simulate.step" else 1.0
        entry = w.task(name, t0)
        attempt = w.start(entry, worker, start)
        if i == 7:  # a lost worker, then a second attempt that worked
            w.lost(entry, attempt, start + 0.5, "worker process died (signal 9)")
            lost.append(entry.row)
            start += 0.5
            attempt = w.start(entry, worker, start, number=2)
        if i in (5, 17, 29):
            w.end(entry, attempt, start + took, error=error_with_traceback(f"bad input {i}"),
                  stdout=f"step {i} starting\n", stderr="warning: odd\n")
            failed.append(entry.row)
        else:
            w.end(entry, attempt, start + took, value=i * i, stdout=f"step {i}\n")
        clocks[worker] = start + took + 0.1
    running = queued = 0
    pending = []
    if live:
        for worker in workers[:2]:
            entry = w.task("simulate.step", t0)
            w.start(entry, worker, now - 30.0)
            running += 1
        for _ in range(5):
            pending.append(w.task("simulate.step", t0))
            queued += 1
    w.sync()
    written(w.path, 40 + running + queued)
    backdate(w.path, t0)
    return {"started": t0, "failed": failed, "lost": lost, "running": running,
            "queued": queued, "finished": 40 - len(failed), "total": 40 + running + queued,
            "pending": pending}


def sample(path: str | os.PathLike, *, ended: bool = True) -> dict:
    """A finished run (the writer closed, as a master's ``close()`` does)."""
    w = Writer(path)
    info = write_sample(w, time.time(), live=not ended)
    w.close()
    return info


def live_sample(path: str | os.PathLike) -> tuple[Writer, dict]:
    """A running run: the writer stays open and heartbeats; the caller closes it."""
    w = Writer(path)
    return w, write_sample(w, time.time(), live=True)


def dead_sample(path: str | os.PathLike, died_ago: float = 20.0) -> dict:
    """A run whose master died: a process writes the live sample and exits without
    closing its journal (no end, heartbeats stop); then its last heartbeat is made
    ``died_ago`` seconds old, as it would be by then."""
    code = ("import os, sys, json; sys.path[:0] = sys.argv[2:]\n"
            "from view.journals import live_sample\n"
            "w, info = live_sample(sys.argv[1]); info.pop('pending')\n"
            "print(json.dumps(info), flush=True); os._exit(0)\n")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code, str(path), here, *sys.path],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    info = json.loads(done.stdout)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=30)
    try:
        conn.execute("UPDATE runs SET heartbeat = ?", (time.time() - died_ago,))
    finally:
        conn.close()
    return info


def synthetic(path: str | os.PathLike, n: int, workers: int = 16) -> dict:
    """A finished run of ``n`` short tasks on ``workers`` workers, through the writer:
    one task in 1,000 failed (with a traceback), one in 5,000 retried after a lost worker."""
    t0 = time.time() - 3600.0
    w = Writer(path, settings={**SETTINGS, "num_workers": workers})
    names = ["sim.step", "sim.reduce", "sim.load", "sim.save", "sim.check"]
    clocks = [t0 + 1.0] * workers
    failed = lost = 0
    for i in range(1, n + 1):
        k = i % workers
        start = clocks[k]
        took = 0.002 + (i % 7) * 0.001
        entry = w.task(names[i % 5], t0)
        attempt = w.start(entry, f"local-{k}", start)
        if i % 5000 == 0:
            w.lost(entry, attempt, start + 0.001, "worker process died (signal 9)")
            start += 0.001
            attempt = w.start(entry, f"local-{k}", start, number=2)
            lost += 1
        if i % 1000 == 0:
            w.end(entry, attempt, start + took, error=error_with_traceback(f"bad item {i}"),
                  stdout=f"item {i}\n")
            failed += 1
        else:
            w.end(entry, attempt, start + took, value=1)
        clocks[k] = start + took + 0.00002
        if i % 20_000 == 0:
            w.sync()  # the writer batches; this bounds what waits in memory
    w.close()
    backdate(path, t0, max(clocks) + 1.0)
    return {"total": n, "failed": failed, "lost": lost, "finished": n - failed}
