"""What ``pymw watch`` and ``pymw report`` ask a journal: cheap queries, aggregated in SQL.

Every query here is meant to stay cheap on a journal of a million tasks: counts go
through the ``tasks_state`` index, "what runs now" starts from the running tasks (a
short range of that index), and "recent" questions are ranges of ``attempts_started``.
Nothing here writes: the connection is read-only.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from pymw_core.processes import pid_gone

STATES = ("queued", "running", "finished", "failed", "cancelled")
# An attempt that ended badly: shown among the failures (a task's own error, a lost
# worker that may be retried, a timeout).
BAD_OUTCOMES = ("error", "lost", "timeout")
# The master writes its heartbeat about every second; this long without one and no
# `ended`, the master is taken to be gone (killed, its host down).
HEARTBEAT_STALE = 15.0


def open_journal(path: str) -> sqlite3.Connection:
    """A read-only connection to the journal at ``path``; refuses a file that is not one."""
    from pymw_core.journal import open_reader

    conn = open_reader(path)
    conn.execute("PRAGMA busy_timeout = 5000")  # a checkpoint may hold the WAL index briefly
    return conn


@dataclass
class Run:
    """One row of ``runs``: a master that opened this journal."""

    id: int
    started: float
    ended: float | None
    heartbeat: float | None
    pid: int | None
    host: str | None
    program: str | None
    interface: str | None
    settings: dict[str, Any] = field(default_factory=dict)

    def status(self, now: float | None = None) -> str:
        """``"running"``, ``"ended"``, or ``"master gone"`` (no end, and no recent
        heartbeat or, on this host, no master process any more)."""
        if self.ended is not None:
            return "ended"
        now = time.time() if now is None else now
        last = self.heartbeat if self.heartbeat is not None else self.started
        if now - last > HEARTBEAT_STALE:
            return "master gone"
        if self.pid and self.host == socket.gethostname() and pid_gone(self.pid):
            return "master gone"  # at once, not after HEARTBEAT_STALE
        return "running"

    def last_seen(self) -> float:
        """When this run was last known alive: its end, else its heartbeat, else its start."""
        return self.ended or self.heartbeat or self.started


def runs(conn: sqlite3.Connection) -> list[Run]:
    """Every run of the journal, oldest first."""
    rows = conn.execute(
        "SELECT id, started, ended, heartbeat, pid, host, program, interface, settings"
        " FROM runs ORDER BY id").fetchall()
    out = []
    for row in rows:
        try:
            settings = json.loads(row[8]) if row[8] else {}
        except ValueError:
            settings = {"(unreadable)": row[8]}
        if not isinstance(settings, dict):
            settings = {"value": settings}
        out.append(Run(*row[:8], settings=settings))
    return out


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Tasks by state (every state named, zero when none), plus ``total``."""
    got = dict.fromkeys(STATES, 0)
    for state, n in conn.execute("SELECT state, count(*) FROM tasks GROUP BY state"):
        got[state] = n
    got["total"] = sum(got.values())
    return got


def done_since(conn: sqlite3.Connection, since: float) -> int:
    """Tasks that ended (finished or failed) at or after ``since``. Costs a scan of the
    ended tasks: ``pymw watch`` asks it once, then follows the counts."""
    return conn.execute(
        "SELECT count(*) FROM tasks WHERE state IN ('finished', 'failed') AND ended >= ?",
        (since,)).fetchone()[0]


@dataclass
class Running:
    """An attempt under way: which worker runs which task, since when."""

    worker: str
    host: str
    task: int
    name: str
    number: int
    started: float


def running(conn: sqlite3.Connection) -> list[Running]:
    """Attempts without an end, of tasks the journal holds as running (index range)."""
    rows = conn.execute(
        "SELECT a.worker, a.host, t.id, t.name, a.number, a.started"
        " FROM tasks t JOIN attempts a ON a.task = t.id"
        " WHERE t.state = 'running' AND a.ended IS NULL ORDER BY a.started").fetchall()
    return [Running(r[0] or "?", r[1] or "", *r[2:]) for r in rows]


@dataclass
class Worker:
    """A worker seen recently: its host, attempts ended in the window, last activity."""

    worker: str
    host: str
    done: int
    last: float


def recent_workers(conn: sqlite3.Connection, since: float) -> list[Worker]:
    """Workers that started an attempt at or after ``since`` (a range of attempts_started)."""
    rows = conn.execute(
        "SELECT worker, max(host), sum(ended IS NOT NULL), max(coalesce(ended, started))"
        " FROM attempts WHERE started >= ? GROUP BY worker", (since,)).fetchall()
    return [Worker(r[0] or "?", r[1] or "", r[2] or 0, r[3]) for r in rows]


@dataclass
class Failure:
    """A failed task, or an attempt that ended badly (a lost worker, a timeout)."""

    when: float
    task: int
    name: str
    kind: str       # 'failed' for a task that failed for good, else the attempt's outcome
    line: str       # the error's last line, or why the worker was lost
    worker: str = ""


def recent_failures(conn: sqlite3.Connection, limit: int, since: float) -> list[Failure]:
    """The latest ``limit`` failures, newest first: failed tasks (``tasks_state`` index)
    and bad attempts that started at or after ``since`` (``attempts_started`` index)."""
    out: list[Failure] = []
    for tid, name, ended, error, detail, worker in conn.execute(
            "SELECT t.id, t.name, t.ended, r.error,"
            " (SELECT detail FROM attempts WHERE task = t.id ORDER BY number DESC LIMIT 1),"
            " (SELECT worker FROM attempts WHERE task = t.id ORDER BY number DESC LIMIT 1)"
            " FROM tasks t LEFT JOIN results r ON r.task = t.id"
            " WHERE t.state = 'failed' ORDER BY t.ended DESC LIMIT ?", (limit,)):
        out.append(Failure(ended or 0.0, tid, name, "failed", error or detail or "", worker or ""))
    seen = {f.task for f in out}
    marks = ",".join("?" * len(BAD_OUTCOMES))
    for tid, name, ended, outcome, detail, worker in conn.execute(
            "SELECT a.task, t.name, a.ended, a.outcome, a.detail, a.worker"
            " FROM attempts a JOIN tasks t ON t.id = a.task"
            f" WHERE a.started >= ? AND a.outcome IN ({marks})"
            " ORDER BY a.ended DESC LIMIT ?", (since, *BAD_OUTCOMES, limit)):
        if tid in seen and outcome == "error":
            continue  # the task's own error, already listed as its failure
        out.append(Failure(ended or 0.0, tid, name, outcome, detail or "", worker or ""))
    out.sort(key=lambda f: f.when, reverse=True)
    return out[:limit]


def last_line(text: str | None) -> str:
    """The last non-blank line of ``text`` (an error's message, say), or ``""``."""
    for line in reversed((text or "").splitlines()):
        if line.strip():
            return line.strip()
    return ""
