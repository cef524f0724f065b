"""The journal: a run's memory in one SQLite file, so that a run outlives its master.

Why SQLite (stdlib ``sqlite3``): one file, no server, atomic commits that survive a
killed process, and readers in other processes (``pymw journal``, ``pymw watch``)
while the master writes (WAL mode). The schema is in docs/journal.md; version 1 is
agreed with the readers and only grows.

Writes go in batches (group commit): the lifecycle queues ops under its lock and goes
on; one thread of the master sends whatever accumulated to the writer process
(pymw_core.journal_writer, which folds them into rows and commits), so a busy run
commits thousands of rows at once and a quiet one each row within milliseconds.
``synchronous=NORMAL`` in WAL mode: a commit survives the master's death (SIGKILL) at
any moment; only a power loss may take the last commits back. What the writer process
was sent before the master died is committed too.

A file that is not a journal (wrong ``application_id``) is refused before anything is
written; a second live master on one journal is refused at once (an ``flock`` on
``<journal>.lock``, which the kernel releases when its holder dies).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from pymw_core import journal_writer, wire
from pymw_core.errors import JournalError
from pymw_core.journal_writer import _DROP, _END, _HANDLE, _START, _SUB
from pymw_core.processes import pid_gone

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
        self._writer: subprocess.Popen | None = None
        try:
            self._open(program, interface, settings)
            self._writer = self._start_writer()
        except BaseException:
            self._release()
            if getattr(self, "_made_lock", False):  # leave nothing behind a refusal
                with contextlib.suppress(OSError):
                    os.unlink(self.path + ".lock")
            raise
        self._ops: list[tuple] = []
        self._idle = False  # the writer sleeps: the next op wakes it
        self._held = 0  # new tasks the writer process holds unwritten (see _Carry)
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
            conn.close()  # the writer process writes from now on
            self._conn = None
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
            if not _wait_for_handover(fd, holder):
                os.close(fd)
                raise JournalError(
                    f"the journal {self.path} is in use by a live master ({holder}); two "
                    "masters cannot share one journal"
                ) from None
        self._lock_fd = fd
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def _start_writer(self) -> subprocess.Popen:
        """The writer process (pymw_core.journal_writer), holding the lock with the master:
        a master SIGKILLed leaves the lock with its writer until that has committed what
        it was sent and ended. Returns once it said it is ready: one that cannot start
        is an error here, at ``Master()``, not a run that goes on unrecorded."""
        try:
            writer = subprocess.Popen(
                [sys.executable, "-I", "-S", journal_writer.__file__, self.path,
                 str(self.run_id), repr(journal_writer._HOLD), str(journal_writer._HOLD_ROWS)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(self._lock_fd,),
                cwd="/",
            )
        except OSError as exc:
            raise JournalError(f"cannot start the journal's writer process "
                               f"({sys.executable}): {exc}") from exc
        self._writer = writer  # from here on, _release() ends it whatever happens
        try:
            ready = journal_writer.read_frame(writer.stdout.fileno())  # type: ignore[union-attr]
        except Exception as exc:
            ready = ("error", f"it said something else ({type(exc).__name__}: {exc})")
        if ready is None or ready[0] != "ok":
            with contextlib.suppress(subprocess.TimeoutExpired):
                writer.wait(_WRITER_EXIT)
            why = ready[1] if ready else f"it ended at once (exit status {writer.returncode})"
            raise JournalError(f"the journal's writer process ({sys.executable} "
                               f"{journal_writer.__file__}) could not start: {why}")
        return writer

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
        writer = self._writer
        if writer is not None:
            for pipe in (writer.stdin, writer.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()  # type: ignore[union-attr]
            try:  # at the end of its stdin it commits what it holds and ends
                writer.wait(_WRITER_EXIT)
            except subprocess.TimeoutExpired:
                log.error("the journal's writer process (pid %d) did not end within %g s; "
                          "killing it", writer.pid, _WRITER_EXIT)
                writer.kill()
                writer.wait()
            self._writer = None
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
        if not self._index:  # a new journal, or every recorded task taken: no lock to take
            return None
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
        stdout, stderr)`` of a task that finished or failed, pickled here (the
        user gets the value only after it is committed). Returns the op's sequence
        number: ``sync(upto=)`` it before handing the task out."""
        if result is not None:  # pickled here, the one place that has the objects
            error, value, stdout, stderr = result
            if error is None and value is None:  # the commonest result: no call, no pickling
                result = (row, 1, _PICKLED_NONE, stdout, stderr, None, None)
            else:
                result = _result_row(row, error, value, stdout, stderr)
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
        if self.broken is None and self._writer is not None:  # not closed already
            try:
                self._send(("close", None))
            except JournalError as exc:
                log.error("the journal %s could not record the run's end: %s", self.path, exc)
        self._release()

    # -- the sending thread -----------------------------------------------------------------

    def _write_loop(self) -> None:
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
                    if self._held:  # held tasks are written once _HOLD old
                        wait = min(wait, journal_writer._HOLD / 2)
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
                if ops or beat or self._held or stopping:
                    self._held = self._send(("batch", (ops, beat, stopping)))
                    if beat:
                        last_beat = now
                    last_commit = time.monotonic()
                    last_batch = len(ops)
            except JournalError as exc:  # a full disk, a removed file ...
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

    def _send(self, message: tuple) -> int:
        """``message`` to the writer process; its answer (see journal_writer), or raises
        JournalError saying why it did not commit."""
        writer = self._writer
        assert writer is not None and writer.stdin is not None and writer.stdout is not None
        try:
            journal_writer.write_frame(writer.stdin.fileno(), message)
            reply = journal_writer.read_frame(writer.stdout.fileno())
        except (OSError, ValueError):
            reply = None  # its pipe closed: it ended
        except Exception as exc:
            raise JournalError(f"a batch cannot be sent to the journal's writer: {exc}") from exc
        if reply is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                writer.wait(_WRITER_EXIT)
            raise JournalError(f"the journal's writer process (pid {writer.pid}) ended "
                               f"unexpectedly (exit status {writer.returncode})")
        status, value = reply
        if status != "ok":
            raise JournalError(value)
        return value

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self.broken = str(exc)
            self._cond.notify_all()
        log.error("the journal %s cannot be written any more (%s): the run goes on, but "
                  "what happens from now on is not recorded", self.path, self.broken)


_READ_AHEAD = 512  # results outcome() reads at once
_LINGER = 0.02  # seconds a batch may grow after a commit while nobody waits for it
_GAP = 0.005  # ... and while get_result waits, in a busy run (batches >= _BUSY ops)
_BUSY = 64
_WRITER_EXIT = 30.0  # seconds the writer may take to commit and end once the master closed
_HANDOVER = 30.0  # ... and the writer of a dead master, before the next master takes over


def _wait_for_handover(fd: int, holder: str) -> bool:
    """True once the lock on ``fd`` is ours, if its holder was a master of this host that
    has died (its writer process still committing what it was sent); False at once if
    the holder is alive or elsewhere, or after _HANDOVER."""
    import fcntl

    parts = holder.split()
    if len(parts) < 4 or parts[0] != "pid" or parts[2] != "on" or parts[3] != _HOST:
        return False
    try:
        if not pid_gone(int(parts[1])):
            return False
    except ValueError:
        return False
    deadline = time.monotonic() + _HANDOVER
    while time.monotonic() < deadline:
        time.sleep(0.01)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            continue
    return False

_PICKLED_NONE = pickle.dumps(None, 5)


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
