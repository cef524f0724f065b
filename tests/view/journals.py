"""Journals for the view's tests, written with the agreed schema (JOURNAL_SCHEMA.md).

A stand-in until pymw_core.journal (issue 21) is merged: then these go through its
writer. The DDL is the agreed one, so the view reads exactly what a master writes.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time

DDL = """
PRAGMA application_id = 1350126935;
PRAGMA user_version = 1;
CREATE TABLE runs (id INTEGER PRIMARY KEY, started REAL NOT NULL, ended REAL,
  heartbeat REAL, pid INTEGER, host TEXT, program TEXT, interface TEXT, settings TEXT);
CREATE TABLE tasks (id INTEGER PRIMARY KEY, key TEXT NOT NULL, run INTEGER NOT NULL,
  name TEXT NOT NULL, submitted REAL NOT NULL, state TEXT NOT NULL, ended REAL,
  attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX tasks_key ON tasks(key);
CREATE INDEX tasks_state ON tasks(state);
CREATE TABLE attempts (id INTEGER PRIMARY KEY, task INTEGER NOT NULL, number INTEGER NOT NULL,
  run INTEGER NOT NULL, worker TEXT, host TEXT, started REAL NOT NULL, ended REAL,
  outcome TEXT, detail TEXT);
CREATE INDEX attempts_task ON attempts(task);
CREATE INDEX attempts_started ON attempts(started);
CREATE TABLE results (task INTEGER PRIMARY KEY, ok INTEGER NOT NULL, value BLOB,
  stdout TEXT, stderr TEXT, error TEXT, traceback TEXT);
CREATE TABLE handles (task INTEGER NOT NULL, interface TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX handles_task ON handles(task);
"""


class Journal:
    """A writer of journals by hand: runs, tasks, attempts and results as a master would."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.executescript(DDL)

    def run(self, started: float, ended: float | None = None, heartbeat: float | None = None,
            interface: str = "local", settings: dict | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO runs (started, ended, heartbeat, pid, host, program, interface,"
            " settings) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (started, ended, heartbeat if heartbeat is not None else (ended or started),
             os.getpid(), socket.gethostname(), "/home/me/simulate.py", interface,
             json.dumps(settings or {"max_attempts": 3, "num_workers": 4})))
        return cur.lastrowid

    def task(self, run: int, name: str, submitted: float, state: str = "queued",
             ended: float | None = None, attempts: int = 0) -> int:
        cur = self.conn.execute(
            "INSERT INTO tasks (key, run, name, submitted, state, ended, attempts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (os.urandom(8).hex(), run, name, submitted, state, ended, attempts))
        return cur.lastrowid

    def attempt(self, task: int, run: int, worker: str, started: float,
                ended: float | None = None, outcome: str | None = None,
                detail: str | None = None, number: int = 1) -> int:
        cur = self.conn.execute(
            "INSERT INTO attempts (task, number, run, worker, host, started, ended, outcome,"
            " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (task, number, run, worker, "node1", started, ended, outcome, detail))
        return cur.lastrowid

    def result(self, task: int, ok: bool, stdout: str = "", stderr: str = "",
               error: str | None = None, traceback: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO results (task, ok, value, stdout, stderr, error, traceback)"
            " VALUES (?, ?, NULL, ?, ?, ?, ?)", (task, int(ok), stdout, stderr, error, traceback))

    def close(self) -> None:
        self.conn.close()


def sample(path: str | os.PathLike, *, ended: bool = True, now: float | None = None) -> dict:
    """A small run: 3 workers, 40 tasks of two functions, 3 failed with tracebacks, one
    lost attempt retried, 2 running and 5 queued unless ``ended``. Returns what it wrote."""
    now = time.time() if now is None else now
    t0 = now - 100.0
    j = Journal(path)
    run = j.run(t0, ended=now if ended else None, heartbeat=now)
    failed, lost = [], []
    workers = ["local-0", "local-1", "local-2"]
    clocks = dict.fromkeys(workers, t0 + 1.0)
    for i in range(40):
        name = "simulate.step" if i % 4 else "simulate.reduce"
        w = workers[i % 3]
        start = clocks[w]
        took = 2.0 if name == "simulate.step" else 1.0
        tid = j.task(run, name, t0, "finished", start + took, attempts=1)
        if i == 7:  # a lost worker, then a second attempt that worked
            j.attempt(tid, run, w, start, start + 0.5, "lost", "worker process died (signal 9)")
            lost.append(tid)
            start += 0.5
            j.attempt(tid, run, w, start, start + took, "ok", number=2)
            j.conn.execute("UPDATE tasks SET attempts = 2 WHERE id = ?", (tid,))
        elif i in (5, 17, 29):
            error = f"ValueError: bad input {i}"
            j.attempt(tid, run, w, start, start + took, "error", error)
            j.conn.execute("UPDATE tasks SET state = 'failed' WHERE id = ?", (tid,))
            j.result(tid, False, stdout=f"step {i} starting\n", stderr="warning: odd\n",
                     error=error, traceback="Traceback (most recent call last):\n"
                     f'  File "simulate.py", line 12, in step\n    raise ValueError("bad input {i}")\n'
                     f"{error}\n")
            failed.append(tid)
        else:
            j.attempt(tid, run, w, start, start + took, "ok")
            j.result(tid, True, stdout=f"step {i}\n")
        clocks[w] = start + took + 0.1
    running = queued = 0
    if not ended:
        for w in workers[:2]:
            tid = j.task(run, "simulate.step", t0, "running", attempts=1)
            j.attempt(tid, run, w, now - 3.0)
            running += 1
        for _ in range(5):
            j.task(run, "simulate.step", t0)
            queued += 1
    j.close()
    return {"run": run, "started": t0, "failed": failed, "lost": lost, "running": running,
            "queued": queued, "finished": 40 - len(failed), "total": 40 + running + queued}


def synthetic(path: str | os.PathLike, n: int, workers: int = 16) -> dict:
    """A finished run of ``n`` short tasks on ``workers`` workers: one attempt each, one
    task in 1,000 failed (with a traceback), one in 5,000 retried after a lost worker."""
    t0 = time.time() - 3600.0
    j = Journal(path)
    run = j.run(t0, ended=t0 + n * 0.004 / workers * 1.02 + 5)
    names = ["sim.step", "sim.reduce", "sim.load", "sim.save", "sim.check"]
    clocks = [t0 + 1.0] * workers
    tasks, attempts, results = [], [], []
    failed = lost = 0
    for i in range(1, n + 1):
        w = i % workers
        start = clocks[w]
        took = 0.002 + (i % 7) * 0.001
        end = start + took
        state, outcome = "finished", "ok"
        if i % 5000 == 0:
            attempts.append((i, 1, run, f"local-{w}", "node1", start, start + 0.001, "lost",
                             "worker process died (signal 9)"))
            start += 0.001
            end += 0.001
            lost += 1
        number = 2 if i % 5000 == 0 else 1
        if i % 1000 == 0:
            state, outcome = "failed", "error"
            failed += 1
            results.append((i, 0, None, f"item {i}\n", "", f"ValueError: bad item {i}",
                            "Traceback (most recent call last):\n  File \"sim.py\", line 9,"
                            f" in step\nValueError: bad item {i}\n"))
        else:
            results.append((i, 1, b"\x80\x04K\x01.", "", "", None, None))
        tasks.append((i, f"{i:016x}", run, names[i % 5], t0, state, end, number))
        attempts.append((i, number, run, f"local-{w}", "node1", start, end, outcome,
                         None if outcome == "ok" else f"ValueError: bad item {i}"))
        clocks[w] = end + 0.00002
        if len(tasks) >= 50_000:
            _flush(j, tasks, attempts, results)
    _flush(j, tasks, attempts, results)
    j.close()
    return {"total": n, "failed": failed, "lost": lost, "finished": n - failed}


def _flush(j: Journal, tasks: list, attempts: list, results: list) -> None:
    c = j.conn
    c.execute("BEGIN")
    c.executemany("INSERT INTO tasks (id, key, run, name, submitted, state, ended, attempts)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tasks)
    c.executemany("INSERT INTO attempts (task, number, run, worker, host, started, ended,"
                  " outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", attempts)
    c.executemany("INSERT INTO results (task, ok, value, stdout, stderr, error, traceback)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?)", results)
    c.execute("COMMIT")
    tasks.clear()
    attempts.clear()
    results.clear()
