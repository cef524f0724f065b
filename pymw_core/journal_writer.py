"""The journal's writer: a process of its own that folds the master's ops into rows and
commits them to the journal (pymw_core.journal is the master's side).

Why a process: folding a batch of ops into rows and binding them to SQLite is Python work
that, in a thread of the master, took its interpreter lock for about 10 us a task, and
every commit made the master's threads wait on the lock's hand-offs: a journaled run
of null tasks did 0.7-0.8x the tasks a second of one without. In its own process the
work runs beside the master; what the master pays is one marshalled batch a commit.

The protocol, on the process's stdin and stdout: frames of a 4-byte big-endian length,
a tag (``M``: marshal, ``P``: pickle) and the message. Its first frame, unasked, says it
is ready (``("ok", 0)``) or why not. The master then sends ``("batch", (ops, beat,
flush))`` or ``("close", None)``; the writer answers each with ``("ok", held)``
(``held``: new tasks it holds unwritten), or with ``("error", message)`` and ends.
Without a frame (the master gone: end of its stdin, or the master is no longer its
parent) the writer commits what it holds and ends; it never marks the run ended then,
so readers tell a dead master by its stale heartbeat.

Standard library only: the master starts it as ``python -I -S <this file>``, without
site and without importing pymw_core, so that it is ready in milliseconds.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import marshal
import os
import pickle
import select
import signal
import sqlite3
import struct
import sys
import time

TYPE_CHECKING = False  # typing itself is not imported: it would slow the start by ~10 ms
if TYPE_CHECKING:
    from typing import Any

_KEY_INDEX = "CREATE INDEX IF NOT EXISTS tasks_key ON tasks(key)"

# What the lifecycle queues (op codes); the writer folds a batch of them into rows, so a
# task submitted, run and finished within one batch costs three INSERTs, no UPDATE.
_SUB, _START, _END, _HANDLE, _DROP = range(5)

_INSERT_TASKS = ("INSERT INTO tasks (id, key, run, name, submitted, state, ended, attempts) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_UPDATE_TASKS = "UPDATE tasks SET state = ?, ended = ?, attempts = attempts + ? WHERE id = ?"
_INSERT_ATTEMPTS = ("INSERT INTO attempts (id, task, number, run, worker, host, started, ended,"
                    " outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_UPDATE_ATTEMPTS = "UPDATE attempts SET ended = ?, outcome = ?, detail = ? WHERE id = ?"
_INSERT_RESULTS = ("INSERT OR REPLACE INTO results (task, ok, value, stdout, stderr, error, "
                   "traceback) VALUES (?, ?, ?, ?, ?, ?, ?)")
_INSERT_HANDLE = "INSERT INTO handles (task, interface, data) VALUES (?, ?, ?)"
_DROP_HANDLES = "DELETE FROM handles WHERE task = ?"

_CHUNK = 64  # rows per multi-row statement (10 columns: within SQLite's old 999 variables)
# Multi-row UPDATE ... FROM (VALUES ...) needs SQLite 3.33; older ones update row by row.
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33)


# The updates above for many rows at once: ``{}`` takes ``(?, ?, ?, ?)`` once per row.
_UPDATES_FROM = {
    _UPDATE_TASKS: "UPDATE tasks SET state = v.column1, ended = v.column2, attempts = attempts"
                   " + v.column3 FROM (VALUES {}) AS v WHERE tasks.id = v.column4",
    _UPDATE_ATTEMPTS: "UPDATE attempts SET ended = v.column1, outcome = v.column2, detail ="
                      " v.column3 FROM (VALUES {}) AS v WHERE attempts.id = v.column4",
}


@functools.lru_cache(maxsize=4 * _CHUNK)
def _multi_row(sql: str, count: int) -> str:
    """``sql`` (of one row) for ``count`` rows in one statement: one step (sqlite3 lets go
    of the interpreter lock once a step, and each time another thread may take it for
    milliseconds) and one bind loop, instead of ``count``."""
    if sql in _UPDATES_FROM:
        return _UPDATES_FROM[sql].format(",".join(["(?, ?, ?, ?)"] * count))
    head, one = sql.rsplit(" VALUES ", 1)
    return f"{head} VALUES {','.join([one] * count)}"


_MULTI = {_INSERT_TASKS, _INSERT_ATTEMPTS, _INSERT_RESULTS,
          *((_UPDATE_TASKS, _UPDATE_ATTEMPTS) if _UPDATE_FROM else ())}


_ENDED = frozenset(("finished", "failed", "cancelled"))
_HOLD = 1.0  # seconds a new task that has not ended may wait to be written in its end state
_HOLD_ROWS = 40_000  # ... and newer tasks submitted meanwhile (below watch.ID_MARGIN)


class _Carry:
    """New tasks (and their attempts) not yet written: a task that ends within _HOLD of
    its submission is written once, in its final state, instead of inserted then updated.

    ``order`` keeps the held tasks in submission order, so a batch looks only at the
    tasks it touched and at the oldest ones, never at every held task."""

    def __init__(self) -> None:
        self.tasks: dict[int, list] = {}  # row -> its tasks row, held
        self.attempts: dict[int, list] = {}  # attempt row -> its row, not yet written
        self.order: collections.deque[tuple[float, int]] = collections.deque()
        self.newest = 0  # the latest task row submitted


def _fold(ops: list[tuple], run: int, carry: _Carry | None = None,
          flush: bool = True) -> list[tuple[str, list]]:
    """A batch of ops as statements: a row made and changed within the batch is written
    once, in its last state; rows of earlier batches are updated. Order is kept where it
    matters (every op of one row is applied in the order queued). With ``carry``, new
    tasks that have not ended, are younger than _HOLD and less than _HOLD_ROWS tasks
    behind the newest stay there (unless ``flush``)."""
    carry = carry or _Carry()
    held = carry.tasks
    unwritten = carry.attempts
    task_updates: dict[int, list] = {}  # row -> [state, ended, attempts added, row]
    attempt_updates: dict[int, list] = {}
    results: list[tuple] = []
    handles: list[tuple[str, tuple]] = []
    release: list[int] = []  # held tasks to write now: ended, or needed by a handle
    now = time.monotonic()
    for op in ops:
        code = op[0]
        if code == _START:
            _, row, arow, number, label, host, when = op
            unwritten[arow] = [arow, row, number, run, label, host, when, None, None, None]
            task = held.get(row)
            if task is not None:
                task[5], task[6] = "running", None
                task[7] += 1
            else:
                update = task_updates.get(row)
                if update is None:
                    task_updates[row] = ["running", None, 1, row]
                else:
                    update[0], update[1] = "running", None
                    update[2] += 1
        elif code == _END:
            _, row, arow, outcome, detail, state, when, result = op
            if arow is not None:
                attempt = unwritten.get(arow)
                if attempt is not None:
                    attempt[7], attempt[8], attempt[9] = when or time.time(), outcome, detail
                else:
                    attempt_updates[arow] = [when or time.time(), outcome, detail, arow]
            task = held.get(row)
            if task is not None:
                task[5], task[6] = state, when
                if state in _ENDED:
                    release.append(row)
            else:
                update = task_updates.get(row)
                if update is None:
                    task_updates[row] = [state, when, 0, row]
                else:
                    update[0], update[1] = state, when
            if result is not None:
                results.append(result)
        elif code == _SUB:
            _, row, key, name, when, reused = op
            if reused:
                task_updates[row] = ["queued", None, 0, row]
            else:
                held[row] = [row, key, run, name, when, "queued", None, 0]
                carry.order.append((now, row))
                carry.newest = row
        elif code == _HANDLE:  # what re-attaching needs is written now, with its task
            handles.append((_INSERT_HANDLE, op[1:]))
            if op[1] in held:
                release.append(op[1])
        elif code == _DROP:
            handles.append((_DROP_HANDLES, op[1:]))
    order = carry.order
    if flush:
        write_tasks = list(held.values())
        held.clear()
        order.clear()
    else:
        write_tasks = []
        for row in release:
            task = held.pop(row, None)
            if task is not None:
                write_tasks.append(task)
        old = now - _HOLD
        behind = carry.newest - _HOLD_ROWS
        while order and (order[0][0] <= old or order[0][1] <= behind):
            task = held.pop(order.popleft()[1], None)
            if task is not None:
                write_tasks.append(task)
        if not held:
            order.clear()
    # Attempts of tasks still held wait with them (a few: those running now).
    write_attempts = [a for a in unwritten.values() if a[1] not in held]
    for attempt in write_attempts:
        del unwritten[attempt[0]]
    statements = [
        (_INSERT_TASKS, write_tasks),
        (_UPDATE_TASKS, list(task_updates.values())),
        (_INSERT_ATTEMPTS, write_attempts),
        (_UPDATE_ATTEMPTS, list(attempt_updates.values())),
        (_INSERT_RESULTS, results),
    ]
    statements.extend((sql, [params]) for sql, params in handles)
    return statements


def _commit(conn: sqlite3.Connection, ops: list[tuple], run: int, carry: _Carry, beat: bool,
            flush: bool = False) -> None:
    """One transaction: the batch folded into rows (see _fold), and the heartbeat."""
    statements = _fold(ops, run, carry, flush)
    if not beat and not any(rows for _, rows in statements):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            if not rows:
                continue
            if sql not in _MULTI or len(rows) == 1:
                conn.executemany(sql, rows)
                continue
            for start in range(0, len(rows), _CHUNK):
                part = rows[start:start + _CHUNK]
                conn.execute(_multi_row(sql, len(part)), [v for row in part for v in row])
        if beat:
            conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _close_run(conn: sqlite3.Connection, run: int, carry: _Carry) -> None:
    """The master closed: what is held written, the key index built, the run ended."""
    _commit(conn, [], run, carry, beat=False, flush=True)
    conn.execute(_KEY_INDEX)
    conn.execute("UPDATE runs SET ended = ?, heartbeat = ? WHERE id = ?",
                 (time.time(), time.time(), run))
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# -- the process ------------------------------------------------------------------------------

_HEADER = struct.Struct(">I")
_PARENT_CHECK = 1.0  # seconds between looks at whether the master is still the parent


def read_frame(fd: int, parent: int | None = None) -> Any:
    """The next frame's message from ``fd``; None at its end (or, with ``parent``, once
    the process is no longer ``parent``'s child: the master died, another holds the pipe)."""
    head = _read_exactly(fd, _HEADER.size, parent)
    if head is None:
        return None
    body = _read_exactly(fd, _HEADER.unpack(head)[0], parent)
    if body is None:
        return None
    return marshal.loads(body[1:]) if body[:1] == b"M" else pickle.loads(body[1:])


def _read_exactly(fd: int, size: int, parent: int | None) -> bytes | None:
    parts = []
    while size:
        if parent is not None:
            while not select.select([fd], [], [], _PARENT_CHECK)[0]:
                if os.getppid() != parent:
                    return None
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def write_frame(fd: int, message: object) -> None:
    """``message`` in one frame on ``fd``: marshalled (a batch of ops is plain tuples of
    numbers, strings and bytes, and marshal takes 60% of pickle's time over them; both
    ends run the same Python), pickled if marshal refuses it."""
    try:
        body = b"M" + marshal.dumps(message)
    except ValueError:
        body = b"P" + pickle.dumps(message, 5)
    view = memoryview(_HEADER.pack(len(body)) + body)
    while view:
        view = view[os.write(fd, view):]


def main(argv: list[str]) -> int:
    """``journal_writer.py PATH RUN HOLD HOLD_ROWS``: write run RUN's rows to PATH."""
    global _HOLD, _HOLD_ROWS
    path, run = argv[0], int(argv[1])
    _HOLD, _HOLD_ROWS = float(argv[2]), int(argv[3])
    # The master decides when this ends (its close, or its death): a Ctrl-C, a hang-up
    # or a TERM sent to the whole process group must not lose rows it already sent.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    parent = os.getppid()
    carry = _Carry()
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -32000")  # 32 MB: index pages stay in memory
        conn.execute("PRAGMA wal_autocheckpoint = 4000")  # fewer, larger checkpoints
    except sqlite3.Error as exc:
        write_frame(1, ("error", f"{type(exc).__name__}: {exc}"))
        return 1
    write_frame(1, ("ok", 0))  # ready: the master's Master() returns
    while True:
        frame = read_frame(0, parent)
        if frame is None:  # the master is gone: keep what it sent, as it stands
            with contextlib.suppress(Exception):
                _commit(conn, [], run, carry, beat=False, flush=True)
            conn.close()
            return 0
        kind, body = frame
        try:
            if kind == "close":
                _close_run(conn, run, carry)
            else:
                ops, beat, flush = body
                _commit(conn, ops, run, carry, beat, flush)
        except Exception as exc:  # a full disk, a removed file ...
            write_frame(1, ("error", f"{type(exc).__name__}: {exc}"))
            return 1
        write_frame(1, ("ok", len(carry.tasks)))
        if kind == "close":
            conn.close()
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
