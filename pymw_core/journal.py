"""The journal: a run's memory in one SQLite file, so that a run outlives its master.

Why SQLite (stdlib ``sqlite3``): one file, no server, atomic commits that survive a
killed process, and readers in other processes (``pymw journal``, ``pymw watch``)
while the master writes (WAL mode). The schema is in docs/journal.md; version 1 is
agreed with the readers and only grows.

Writes go through ONE writer thread, in batches (group commit): the lifecycle queues
rows under its lock and goes on; the writer commits whatever accumulated, so a busy
run commits thousands of rows at once and a quiet one commits each row within
milliseconds. ``synchronous=NORMAL`` in WAL mode: a commit survives the master's death
(SIGKILL) at any moment; only a power loss may take the last commits back.

A file that is not a journal (wrong ``application_id``) is refused before anything is
written; a second live master on one journal is refused at once (an ``flock`` on
``<journal>.lock``, which the kernel releases when its holder dies).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import logging
import os
import pickle
import socket
import sqlite3
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from pymw_core import wire
from pymw_core.errors import JournalError

log = logging.getLogger("pymw")

APPLICATION_ID = 0x50794D57  # "PyMW"
SCHEMA_VERSION = 1
HEARTBEAT = 1.0  # seconds between the live master's heartbeats
_SQLITE_MAGIC = b"SQLite format 3\x00"

#: How ``resume`` decides which recorded tasks answer a submission (see docs/journal.md).
RESUME_MODES = ("finished", "all", "none")

SCHEMA = """
CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  started REAL NOT NULL,
  ended REAL,
  heartbeat REAL,
  pid INTEGER, host TEXT,
  program TEXT,
  interface TEXT,
  settings TEXT
);
CREATE TABLE tasks (
  id INTEGER PRIMARY KEY,
  key TEXT NOT NULL,
  run INTEGER NOT NULL,
  name TEXT NOT NULL,
  submitted REAL NOT NULL,
  state TEXT NOT NULL,
  ended REAL,
  attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_key ON tasks(key);
CREATE INDEX tasks_state ON tasks(state);
CREATE TABLE attempts (
  id INTEGER PRIMARY KEY,
  task INTEGER NOT NULL,
  number INTEGER NOT NULL,
  run INTEGER NOT NULL,
  worker TEXT,
  host TEXT,
  started REAL NOT NULL,
  ended REAL,
  outcome TEXT,
  detail TEXT
);
CREATE INDEX attempts_task ON attempts(task);
CREATE INDEX attempts_started ON attempts(started);
CREATE TABLE results (
  task INTEGER PRIMARY KEY,
  ok INTEGER NOT NULL,
  value BLOB,
  stdout TEXT, stderr TEXT,
  error TEXT,
  traceback TEXT
);
CREATE TABLE handles (
  task INTEGER NOT NULL,
  interface TEXT NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX handles_task ON handles(task);
"""

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


def open_reader(path: str | os.PathLike) -> sqlite3.Connection:
    """A read-only connection to the journal at ``path`` (for ``pymw journal``, ``watch``).

    Raises :class:`JournalError` saying what the file is not, if it is missing, not an
    SQLite database, or an SQLite database that is not a PyMW journal. Safe while a
    master writes (WAL); never changes the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise JournalError(f"{path} does not exist (or is not a file): no journal there")
    _check_header(path)
    try:
        conn = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True,
                               check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        found = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path} cannot be read as a PyMW journal: {exc}") from exc
    if found != APPLICATION_ID:
        conn.close()
        raise JournalError(
            f"{path} is an SQLite database but not a PyMW journal "
            f"(application_id {found:#x}, a journal's is {APPLICATION_ID:#x})"
        )
    return conn


def _uri_path(path: str) -> str:
    from urllib.parse import quote
    return quote(os.path.abspath(path))


def _check_header(path: str) -> None:
    """Refuse a file that is not an SQLite database, or one that is another program's,
    by reading its 100-byte header: nothing is opened for writing before this passed."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise JournalError(f"cannot read the journal {path}: {exc}") from exc
    if not head:
        return  # empty: a journal not yet written (sqlite3 makes one of it)
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise JournalError(f"{path} is not a PyMW journal (not an SQLite database); "
                           "refusing to touch it")
    app_id = int.from_bytes(head[68:72], "big")
    if app_id not in (0, APPLICATION_ID):  # 0: maybe still only in the WAL; SQLite tells
        raise JournalError(
            f"{path} is an SQLite database of another application (application_id "
            f"{app_id:#x}, a PyMW journal's is {APPLICATION_ID:#x}); refusing to touch it"
        )


@dataclass
class Recorded:
    """A task the journal holds, as a submission of this run may reuse it."""

    row: int
    state: str
    attempts: int


@dataclass
class Outcome:
    """A recorded end: the result (``ok``) or the error, with the task's output."""

    ok: bool
    value: Any
    stdout: str
    stderr: str
    error: str | None
    traceback: str | None


class Entry:
    """A task's place in the journal: its row, the attempts recorded before this run,
    its key and name, and whether the row is reused (recorded by an earlier run)."""

    __slots__ = ("key", "name", "offset", "reused", "row", "seq")

    def __init__(self, row: int, key: str, name: str, offset: int = 0,
                 reused: bool = False) -> None:
        self.row = row
        self.key = key
        self.name = name
        self.offset = offset
        self.reused = reused
        self.seq: int | None = None  # the op count when its last end was queued


class Journal:
    """One master's journal: opened (and locked) at ``Master()``, closed with the master.

    ``program`` is what runs record as their program; a journal whose runs all name
    another program is refused (``program=""`` skips the check). ``resume`` is one of
    :data:`RESUME_MODES`.
    """

    def __init__(self, path: str | os.PathLike, *, program: str, interface: str,
                 settings: dict[str, Any], resume: str = "finished") -> None:
        if resume not in RESUME_MODES:
            raise JournalError(f"resume must be one of {', '.join(RESUME_MODES)}, "
                               f"not {resume!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.resume = resume
        self.interface = interface
        self.program = program
        self._lock_fd = -1
        self._conn: sqlite3.Connection | None = None
        try:
            self._open(program, interface, settings)
        except BaseException:
            self._release()
            if getattr(self, "_made_lock", False):  # leave nothing behind a refusal
                with contextlib.suppress(OSError):
                    os.unlink(self.path + ".lock")
            raise
        self._ops: list[tuple] = []
        self._idle = False  # the writer sleeps: the next op wakes it
        self._carry = _Carry()
        self._labels: dict[Any, tuple[str | None, str | None]] = {}  # worker -> label, host
        self._queued = 0  # ops enqueued so far (a sequence number)
        self._committed = 0  # ops committed so far
        self._cond = threading.Condition(threading.Lock())
        self._waiting = 0
        self._stopping = False
        self.broken: str | None = None
        self._thread = threading.Thread(target=self._write_loop, name="pymw-journal",
                                        daemon=True)
        self._thread.start()

    # -- opening --------------------------------------------------------------------------

    def _open(self, program: str, interface: str, settings: dict[str, Any]) -> None:
        path = self.path
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            raise JournalError(f"cannot open the journal {path}: {folder} is not a directory")
        if os.path.exists(path):
            if not os.path.isfile(path):
                raise JournalError(f"the journal {path} is not a regular file")
            _check_header(path)  # before anything is written, the lock file included
        self._take_lock()
        try:
            conn = sqlite3.connect(path, timeout=10, isolation_level=None,
                                   check_same_thread=False)
            self._conn = conn
            # Read before anything is written: a foreign database is refused unchanged.
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id != APPLICATION_ID and (app_id != 0 or tables):
                raise JournalError(f"{path} is an SQLite database but not a PyMW journal "
                                   f"(application_id {app_id:#x}); refusing to touch it")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"the journal {path} cannot use WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -32000")  # 32 MB: index pages stay in memory
            conn.execute("PRAGMA wal_autocheckpoint = 4000")  # fewer, larger checkpoints
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("PRAGMA application_id").fetchone()[0] == 0:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(f"the journal {path} has schema version {version}, newer "
                                   f"than this PyMW's ({SCHEMA_VERSION}): upgrade PyMW")
            self._check_program(conn, program)
            # tasks_key is built when a master closes, not kept up during a run: its random
            # keys made each insert dirty a page of their own (~4 us a task, a fifth of
            # the journal's cost). No reader looks tasks up by key; this master reads
            # them all at once (_load_index). A master that died leaves it to the next.
            conn.execute("DROP INDEX IF EXISTS tasks_key")
            self.run_id = conn.execute(
                "INSERT INTO runs (started, heartbeat, pid, host, program, interface, settings)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), time.time(), os.getpid(), socket.gethostname(), program,
                 interface, json.dumps(settings, default=repr, sort_keys=True)),
            ).lastrowid
            # A run that died keeps ended NULL, and so do its attempts that were running
            # (the agreed schema): readers tell it by its stale heartbeat.
            self._task_base = conn.execute("SELECT coalesce(max(id), 0) FROM tasks").fetchone()[0]
            self._attempt_base = conn.execute(
                "SELECT coalesce(max(id), 0) FROM attempts").fetchone()[0]
            self._load_index(conn)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the header names a journal now
            self._reader = sqlite3.connect(path, timeout=10, check_same_thread=False)
            self._read_lock = threading.Lock()
            self._ahead: dict[int, tuple] = {}  # results read ahead by outcome()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write the journal {path}: {exc}") from exc

    def _take_lock(self) -> None:
        import fcntl

        lock_path = self.path + ".lock"
        self._made_lock = not os.path.exists(lock_path)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(
                f"cannot open the journal {self.path}: its lock file {lock_path} cannot be "
                f"created ({exc.strerror}); is the directory read-only?"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JournalError(
                f"the journal {self.path} is in use by a live master ({holder}); two masters "
                "cannot share one journal"
            ) from None
        self._lock_fd = fd
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def _check_program(self, conn: sqlite3.Connection, program: str) -> None:
        if not program:
            return
        known = {p for (p,) in conn.execute("SELECT DISTINCT program FROM runs") if p}
        if known and program not in known:
            raise JournalError(
                f"the journal {self.path} records the tasks of another program "
                f"({', '.join(sorted(known))}), not of {program}; use another journal, or "
                "pass journal_program= (config: journal_program) naming the program it "
                "records to carry on with it"
            )

    def _load_index(self, conn: sqlite3.Connection) -> None:
        """Every recorded task by key, in the order they were first submitted."""
        index: dict[str, collections.deque[tuple[int, str, int]]] = {}
        for row, key, state, attempts in conn.execute(
                "SELECT id, key, state, attempts FROM tasks ORDER BY id"):
            found = index.get(key)
            if found is None:
                index[key] = found = collections.deque()
            found.append((row, state, attempts))
        self._index = index
        self._handles: dict[int, list[dict]] = {}
        for task, iface, data in conn.execute("SELECT task, interface, data FROM handles"):
            try:
                self._handles.setdefault(task, []).append(
                    dict(json.loads(data), interface=iface))
            except ValueError:
                continue
        self.recorded = sum(len(v) for v in index.values())

    def _release(self) -> None:
        reader = getattr(self, "_reader", None)
        if reader is not None:
            with contextlib.suppress(sqlite3.Error):
                reader.close()
            self._reader = None
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # the flock goes with the descriptor
            self._lock_fd = -1

    # -- what a submission finds ----------------------------------------------------------

    def match(self, key: str) -> Recorded | None:
        """The next recorded task of ``key`` not yet taken by this run (k-th submission:
        k-th recorded task, in the order first submitted), or None: a new task."""
        with self._read_lock:
            found = self._index.get(key)
            if not found:
                return None
            row, state, attempts = found.popleft()
            if not found:
                del self._index[key]
        return Recorded(row, state, attempts)

    def reusable(self, recorded: Recorded) -> bool:
        """True if ``recorded`` answers the submission without running (per ``resume``)."""
        if self.resume == "none":
            return False
        if recorded.state == "finished":
            return True
        return self.resume == "all" and recorded.state == "failed"

    def outcome(self, row: int) -> Outcome | None:
        """The recorded result of task ``row``; None if it cannot be restored.

        Read ahead in row order (a program started again submits in the same order), so
        resuming a run of 100,000 tasks costs a few hundred queries, not 100,000."""
        with self._read_lock:  # the writer has its own connection
            got = self._ahead.pop(row, None)
            if got is None:
                fetched = self._reader.execute(
                    "SELECT task, ok, value, stdout, stderr, error, traceback FROM results "
                    "WHERE task >= ? ORDER BY task LIMIT ?", (row, _READ_AHEAD)).fetchall()
                self._ahead = {r[0]: r[1:] for r in fetched}
                got = self._ahead.pop(row, None)
        if got is None or got[1] is None:
            return None
        try:
            value = pickle.loads(got[1])
        except Exception:
            log.warning("the journal's result of task %d cannot be loaded; it runs again",
                        row, exc_info=True)
            return None
        return Outcome(bool(got[0]), value, got[2] or "", got[3] or "", got[4], got[5])

    def handles(self, row: int) -> list[dict]:
        """What interfaces recorded to re-attach to task ``row`` (``interface`` key added)."""
        return self._handles.get(row, [])

    def last_handle(self, row: int) -> dict | None:
        """The latest handle this run's interface (by name) recorded for task ``row``."""
        mine = [h for h in self._handles.get(row, ()) if h.get("interface") == self.interface]
        if not mine:
            return None
        handle = dict(mine[-1])
        handle.pop("interface", None)
        return handle

    def entry(self, task_id: int, key: str, name: str,
              recorded: Recorded | None) -> Entry:
        """The journal entry of a task this run runs: a recorded row reused, or a new row
        (master task ids are unique per master, so a base makes them unique here)."""
        if recorded is not None:
            return Entry(recorded.row, key, name, recorded.attempts, reused=True)
        return Entry(self._task_base + task_id, key, name)

    # -- writing (any thread; the lifecycle calls these under its lock) ----------------

    def put(self, op: tuple) -> int:
        """Queue one op for the writer; its sequence number (for ``sync(upto=)``).
        Callers are serialised (the lifecycle's lock): the writer only ever under-counts
        what it took, so ``sync`` never returns early. Only an idle writer is woken: a
        busy one takes what accumulated when its batch is due (no wake-up per op)."""
        self._ops.append(op)
        self._queued += 1
        if self._idle:  # read after the append: see _write_loop
            with self._cond:
                self._idle = False
                self._cond.notify_all()
        return self._queued

    def submitted(self, entry: Entry, when: float) -> None:
        self.put((_SUB, entry.row, entry.key, entry.name, when, entry.reused))

    def started(self, entry: Entry, attempt_id: int, number: int, worker: Any,
                when: float) -> None:
        labels = self._labels.get(worker) if worker.__hash__ is not None else None
        if labels is None:
            labels = worker_label(worker)
            if worker.__hash__ is not None and len(self._labels) < 10_000:
                self._labels[worker] = labels
        self.put((_START, entry.row, self._attempt_base + attempt_id, entry.offset + number,
                  labels[0], labels[1], when))

    def ended(self, row: int, attempt_id: int | None, outcome: str | None,
              detail: str | None, state: str, when: float | None,
              result: tuple | None) -> int:
        """An attempt ended (``attempt_id``; None: no attempt ran) and the task moved to
        ``state`` (``queued`` again when it is retried). ``result`` is ``(error, value,
        stdout, stderr)`` of a task that finished or failed, pickled by the writer (the
        user gets the value only after it is committed). Returns the op's sequence
        number: ``sync(upto=)`` it before handing the task out."""
        return self.put((_END, row, None if attempt_id is None else self._attempt_base + attempt_id,
                  outcome, detail, state, when, result))

    def handle(self, row: int, data: dict) -> None:
        """Record what this run's interface needs to re-attach to task ``row``."""
        self.put((_HANDLE, row, self.interface, json.dumps(data, sort_keys=True, default=str)))

    def drop_handles(self, row: int) -> None:
        self.put((_DROP, row))

    def sync(self, timeout: float | None = None, upto: int | None = None) -> None:
        """Wait until every row queued so far (or up to op ``upto``, as ``put`` numbered
        it) is committed (``get_result`` calls this before a handout)."""
        target = self._queued if upto is None else upto
        if self._committed >= target:
            return
        with self._cond:
            if self._committed >= target or self.broken is not None:
                return
            self._waiting += 1
            self._cond.notify_all()
            try:
                deadline = None if timeout is None else time.monotonic() + timeout
                while (self._committed < target and self.broken is None
                       and self._thread.is_alive()):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return
                    self._cond.wait(left if left is not None else 1.0)
            finally:
                self._waiting -= 1

    def close(self) -> None:
        """Commit what is queued, mark the run ended, release the lock."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        if self._conn is not None and self.broken is None:
            try:
                self._conn.execute(_KEY_INDEX)
                self._conn.execute("UPDATE runs SET ended = ?, heartbeat = ? WHERE id = ?",
                                   (time.time(), time.time(), self.run_id))
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.error("the journal %s could not record the run's end: %s", self.path, exc)
        self._release()

    # -- the writer thread ------------------------------------------------------------------

    def _write_loop(self) -> None:
        conn = self._conn
        assert conn is not None
        carry = self._carry
        last_beat = 0.0
        last_commit = 0.0
        last_batch = 0  # ops in the last batch: a busy run's batches wait _GAP when waited on
        while True:
            with self._cond:
                while not self._stopping:
                    if self._ops:
                        # A batch is due _LINGER after the last commit; when someone waits
                        # (sync), at once in a quiet run (its last batch was small), _GAP
                        # after the last commit in a busy one: a busy run commits hundreds
                        # of rows at once, a quiet one each row at once.
                        if not self._waiting:
                            due = last_commit + _LINGER
                        elif last_batch >= _BUSY:
                            due = last_commit + _GAP
                        else:
                            break
                        left = due - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                        continue
                    wait = HEARTBEAT - (time.monotonic() - last_beat)
                    if carry.tasks:  # held tasks are written once _HOLD old
                        wait = min(wait, _HOLD / 2)
                    if wait <= 0:
                        break
                    # Set before looking at _ops once more: a put() that this look misses
                    # sees _idle afterwards and wakes us.
                    self._idle = True
                    if self._ops:
                        self._idle = False
                        continue
                    woke = self._cond.wait(wait)
                    self._idle = False
                    if not woke and not self._ops:
                        break
                self._idle = False
                count = self._queued  # read before the swap: never more than is taken
                ops, self._ops = self._ops, []
                stopping = self._stopping
            try:
                now = time.monotonic()
                beat = now - last_beat >= HEARTBEAT
                if ops or beat or carry.tasks:
                    self._commit(conn, ops, beat, flush=stopping)
                    if beat:
                        last_beat = now
                    last_commit = time.monotonic()
                    last_batch = len(ops)
            except Exception as exc:  # a full disk, a removed file ...
                self._fail(exc)
                return
            with self._cond:
                self._committed = count
                if self._waiting:
                    self._cond.notify_all()
            if stopping:
                with self._cond:
                    if not self._ops:
                        return

    def _commit(self, conn: sqlite3.Connection, ops: list[tuple], beat: bool,
                flush: bool = False) -> None:
        """One transaction: the batch folded into rows (see _fold)."""
        statements = _fold(ops, self.run_id, self._carry, flush)
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
                conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?",
                             (time.time(), self.run_id))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self.broken = f"{type(exc).__name__}: {exc}"
            self._cond.notify_all()
        log.error("the journal %s cannot be written any more (%s): the run goes on, but "
                  "what happens from now on is not recorded", self.path, self.broken)




_READ_AHEAD = 512  # results outcome() reads at once
_LINGER = 0.02  # seconds a batch may grow after a commit while nobody waits for it
_GAP = 0.005  # ... and while get_result waits, in a busy run (batches >= _BUSY ops)
_BUSY = 64

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
                results.append(_result_row(row, *result))
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


def _result_row(row: int, error: BaseException | None, value: Any, stdout: str,
                stderr: str) -> tuple:
    if error is None:
        try:  # the usual case at once; _dumps has the fallbacks
            return (row, 1, pickle.dumps(value, 5), stdout, stderr, None, None)
        except Exception:
            return (row, 1, _dumps(value), stdout, stderr, None, None)
    tb = getattr(error.__cause__, "tb", None) or "".join(
        traceback.format_exception(type(error), error, error.__traceback__))
    message = f"{type(error).__name__}: {error}"
    return (row, 0, _dumps((error, tb)), stdout, stderr, message, tb)


def _dumps(value: Any) -> bytes | None:
    """The value pickled, or None when it cannot be (it then runs again on resume)."""
    try:
        return pickle.dumps(value, 5)
    except Exception:
        pass
    try:
        import cloudpickle
        return cloudpickle.dumps(value, 5)
    except Exception:
        log.warning("a result cannot be pickled for the journal: it would run again on "
                    "resume", exc_info=True)
        return None


def worker_label(worker: Any) -> tuple[str | None, str | None]:
    """A worker's label and host for the journal, as error messages name them
    (:func:`pymw_core.task.describe_worker`); the host defaults to this machine's."""
    if worker is None:
        return None, None
    from pymw_core.task import describe_worker

    host, name = describe_worker(worker)
    return name, host or _HOST


_HOST = socket.gethostname()


# -- the task key ----------------------------------------------------------------------------

_file_hashes: dict[tuple[str, int, int], str] = {}
_file_lock = threading.Lock()


def file_digest(path: str) -> str:
    """sha256 of a file's contents, cached by (path, size, mtime_ns)."""
    st = os.stat(path)
    cache_key = (path, st.st_size, st.st_mtime_ns)
    with _file_lock:
        hit = _file_hashes.get(cache_key)
    if hit is not None:
        return hit
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    hexed = digest.hexdigest()
    with _file_lock:
        if len(_file_hashes) > 100_000:
            _file_hashes.clear()
        _file_hashes[cache_key] = hexed
    return hexed


def task_key(code: tuple, args: bytes, extras: dict | None) -> str:
    """The hex digest that decides "the same task" (docs/journal.md, "The key").

    BLAKE2b (128 bits, 32 hex digits: a journal of a million tasks stays small) over:
    the code (a function's pickled blob, or a script's name and source
    text), the pickled positional arguments, and of the extras: keyword arguments,
    modules shipped by value (their sources) and imported, dep_funcs' pickle, and each
    data file's name and the sha256 of its contents.
    """
    h = _code_state(code).copy()
    _feed(h, wire.joined(args) if args else b"")  # the same key however the args travel
    if extras:
        for name in sorted(extras):
            value = extras[name]
            _feed(h, name.encode())
            if name == "files":
                for entry in value:
                    _feed(h, _file_part(entry))
            else:
                _feed(h, _canonical(value))
    return h.hexdigest()


_code_states: dict[int, tuple[tuple, Any]] = {}  # id(code) -> (code, hash state after it)


def _code_state(code: tuple) -> Any:
    """The key's hash state after the code part; the packer reuses one code tuple per
    function, so a program submitting one function many times hashes its blob once."""
    hit = _code_states.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    h = hashlib.blake2b(b"pymw-task-key-1\0", digest_size=16)
    _feed(h, code[0].encode())
    if code[0] == "f":
        _feed(h, code[2] or b"")
    else:
        _feed(h, str(code[1]).encode())
        _feed(h, str(code[2]).encode())
    if len(_code_states) >= 1024:
        _code_states.clear()
    _code_states[id(code)] = (code, h)
    return h


def _file_part(entry: Any) -> bytes:
    """A data file's share of the key: its name and its contents' digest."""
    if isinstance(entry, (tuple, list)) and len(entry) >= 2:
        name, where = entry[0], entry[1]
        if isinstance(where, (bytes, bytearray, memoryview)):
            return f"{name}\0".encode() + hashlib.sha256(where).hexdigest().encode()
        if isinstance(where, str) and os.path.isfile(where):
            # The master's snapshot of the file at submit (pymw_core.staging) lives in a
            # folder named by its contents' SHA-256: no need to read it again.
            folder = os.path.basename(os.path.dirname(where))
            if len(folder) == 40 and all(c in "0123456789abcdef" for c in folder):
                return f"{name}\0{folder}".encode()
            return f"{name}\0{file_digest(where)}".encode()
        return f"{name}\0".encode() + _canonical(where)
    return _canonical(entry)


def _canonical(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return pickle.dumps(value, 4)
    except Exception:
        return repr(value).encode()


def _feed(h: Any, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def program_name() -> str:
    """The running program, as runs record it: ``sys.argv[0]`` made absolute, or ''."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if not argv0 or argv0 in ("-c", "-m") or argv0.startswith("<"):
        return ""
    return os.path.abspath(argv0)
