"""``pymw journal run.db``: what a journal says about its run, read without the master.

Reads through :func:`pymw_core.journal.open_reader` (read-only; safe while the run
goes on, from another process). Everything is aggregated in SQL, so a journal of a
million tasks is summarised in about a second.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any

from pymw_core.journal import HEARTBEAT, open_reader

LIVE_AFTER = 5 * HEARTBEAT  # a run whose heartbeat is older than this died (or ended)


def summarize(path: str | os.PathLike, failures: int = 10) -> dict[str, Any]:
    """The journal at ``path`` as a dict (what ``--json`` prints)."""
    conn = open_reader(path)
    try:
        with conn:  # one read transaction: a consistent picture while the master writes
            conn.execute("BEGIN")
            return _summary(conn, os.fspath(path), failures)
    finally:
        conn.close()


def _summary(conn: Any, path: str, failures: int) -> dict[str, Any]:
    now = time.time()
    runs = []
    for rid, started, ended, beat, pid, host, program, iface in conn.execute(
            "SELECT id, started, ended, heartbeat, pid, host, program, interface FROM runs "
            "ORDER BY id"):
        if ended is not None:
            status = "ended"
        elif beat is not None and now - beat < LIVE_AFTER:
            status = "live"
        else:
            status = "died"
        runs.append({"id": rid, "started": started, "ended": ended, "heartbeat": beat,
                     "pid": pid, "host": host, "program": program, "interface": iface,
                     "status": status})
    states = dict.fromkeys(("queued", "running", "finished", "failed", "cancelled"), 0)
    for state, count in conn.execute("SELECT state, count(*) FROM tasks GROUP BY state"):
        states[state] = count
    first, last_end = conn.execute("SELECT min(submitted), max(ended) FROM tasks").fetchone()
    last_attempt = conn.execute("SELECT max(coalesce(ended, started)) FROM attempts").fetchone()[0]
    last = max((t for t in (last_end, last_attempt) if t is not None), default=None)
    live = [r["id"] for r in runs if r["status"] == "live"]
    # An attempt without an outcome runs, if its master lives; else its master died.
    outcomes = dict(conn.execute(
        "SELECT CASE WHEN outcome IS NOT NULL THEN outcome WHEN run IN "
        f"({', '.join(str(int(i)) for i in live) or 'NULL'}) THEN 'running' "
        "ELSE 'master died' END, count(*) FROM attempts GROUP BY 1"))
    hosts = [
        {"host": host, "attempts": n, "workers": workers, "ok": ok, "failed": bad}
        for host, n, workers, ok, bad in conn.execute(
            "SELECT coalesce(host, '?'), count(*), count(DISTINCT worker), "
            "sum(outcome = 'ok'), sum(outcome IS NOT NULL AND outcome != 'ok') "
            "FROM attempts GROUP BY 1 ORDER BY 2 DESC")
    ]
    errors = [
        {"error": error, "tasks": n}
        for error, n in conn.execute(
            "SELECT coalesce(r.error, '(no error recorded)'), count(*) FROM tasks t "
            "LEFT JOIN results r ON r.task = t.id WHERE t.state = 'failed' "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 20")
    ]
    failed = [
        {"task": tid, "name": name, "attempts": attempts, "ended": ended, "error": error}
        for tid, name, attempts, ended, error in conn.execute(
            "SELECT t.id, t.name, t.attempts, t.ended, r.error FROM tasks t "
            "LEFT JOIN results r ON r.task = t.id WHERE t.state = 'failed' "
            "ORDER BY t.ended DESC LIMIT ?", (failures,))
    ]
    return {
        "journal": os.path.abspath(path),
        "runs": runs,
        "tasks": sum(states.values()),
        "states": states,
        "first_submitted": first,
        "last_activity": last,
        "span_seconds": (last - first) if first is not None and last is not None else None,
        "attempts": outcomes,
        "hosts": hosts,
        "errors": errors,
        "failures": failed,
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary as text for a terminal."""
    lines = [f"journal {s['journal']}"]
    for run in s["runs"]:
        end = (_when(run["ended"]) if run["ended"] is not None
               else "live" if run["status"] == "live"
               else f"died (last heard {_when(run['heartbeat'])})")
        lines.append(f"  run {run['id']}: {run['interface']} on {run['host']} pid {run['pid']}, "
                     f"{_when(run['started'])} - {end}  {run['program'] or ''}".rstrip())
    states = s["states"]
    lines.append(f"tasks {s['tasks']}: " + ", ".join(f"{n} {k}" for k, n in states.items()))
    if s["first_submitted"] is not None:
        span = s["span_seconds"]
        lines.append(f"time  {_when(s['first_submitted'])} - {_when(s['last_activity'])}"
                     + (f" ({_duration(span)})" if span is not None else ""))
    if s["attempts"]:
        lines.append("attempts " + ", ".join(f"{n} {k}" for k, n in
                                             sorted(s["attempts"].items())))
    if s["hosts"]:
        lines.append("hosts")
        for h in s["hosts"]:
            lines.append(f"  {h['host']}: {h['attempts']} attempts on {h['workers']} workers "
                         f"({h['ok'] or 0} ok, {h['failed'] or 0} not)")
    if s["errors"]:
        lines.append("failures by error")
        for e in s["errors"]:
            lines.append(f"  {e['tasks']:>6}  {e['error']}")
    if s["failures"]:
        lines.append(f"last {len(s['failures'])} failed tasks")
        for f in s["failures"]:
            lines.append(f"  task {f['task']} {f['name']} after {f['attempts']} attempts: "
                         f"{f['error'] or '(no error recorded)'}")
    return "\n".join(lines)


def _when(t: float | None) -> str:
    if t is None:
        return "?"
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"
