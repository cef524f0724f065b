"""The ``local`` interface: worker processes on this machine, started once and reused.

Each process runs :mod:`pymw_core.worker` on a pair of pipes. A process takes its
running task plus ``prefetch`` more queued behind it, so it never waits for the master
between small tasks. A process that dies is replaced; the task it was running is
handed back to the master's retry rule, the ones queued behind it go back unharmed.

A process is offered tasks as soon as it starts (so a burst spreads over all of
them), but its connection sends them only once its ``hello`` was checked. One on
another Python minor version is refused (a code object of one version can crash
another's interpreter) and is sent nothing; since every replacement would run the
same interpreter, the interface gives up at once: what it held and what is queued
fail with the refusal, naming both versions.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from queue import SimpleQueue
from typing import Any

from pymw_core import wire
from pymw_core.connection import WorkerConnection
from pymw_core.errors import InterfaceError
from pymw_core.pacing import PacedWorker, spread
from pymw_core.passthrough import pass_through

_START_FAILURES_ALLOWED = 3  # processes dying before they say hello, in a row, none ready
_START_WAIT = 30.0  # seconds close() waits for a worker start under way (fork + exec)
_STOP_GRACE = 5.0  # seconds a worker has to act on a cancel before it is killed
_CLOSE_GRACE = 2.0  # seconds close() gives the guardians to end their process trees
_STDERR_TAIL_LINES = 40
_STDERR_SETTLE = 2.0  # seconds an ended process's stderr has to reach its end (see _describe_exit)
_INLINE_SEND_LIMIT = 256 * 1024  # bytes; larger tasks go through the process's sender thread
_PIPE_SIZE = 1 << 20  # room for many small tasks (or one big frame) without a blocking write


class _Process(PacedWorker):
    """One worker process and the master's view of it."""

    def __init__(self, index: int, prefetch: int | None, popen: subprocess.Popen,
                 scratch: str) -> None:
        super().__init__(prefetch)
        self.index = index
        self.popen = popen
        self.scratch = scratch
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self.stderr_ended = threading.Event()  # its drain thread read the end of the pipe
        self.connection: WorkerConnection | None = None
        self._outbox: SimpleQueue | None = None
        self._sending = threading.Lock()
        self._stopped = False
        self.serving = False  # its hello was checked, and it was announced "up"

    @property
    def pid(self) -> int:
        """The process started: the guardian of the one that runs the tasks, its child."""
        return self.popen.pid

    host_name = socket.gethostname()  # what task errors name (see pymw_core.task.describe_worker)

    def __repr__(self) -> str:
        return f"<local worker {self.index} pid={self.pid}>"

    def __str__(self) -> str:
        return f"local/w{self.index} (pid {self.pid})"

    def send_big(self, task: Any) -> None:
        """Write a big task from this process's sender thread, started on first use.

        The write can wait on the pipe until the process takes the task, so it never
        runs on the master's thread; one long-lived thread per process, not one per task.
        """
        with self._sending:
            if not self._stopped:
                if self._outbox is None:
                    self._outbox = SimpleQueue()
                    threading.Thread(target=_send_loop, args=(self, self._outbox),
                                     name=f"pymw-send-{self.index}", daemon=True).start()
                self._outbox.put(task)
                return
        _send(self, task)  # the process is gone: this fails at once and hands the task back

    def stop_sending(self) -> None:
        """The process ended: its sender thread finishes what it holds (each fails) and ends."""
        with self._sending:
            self._stopped = True
            if self._outbox is not None:
                self._outbox.put(None)


class LocalInterface:
    """Runs tasks in ``num_workers`` persistent processes (default: the CPU count).

    ``prefetch`` tasks wait on each process behind the one it runs; None (the default)
    adapts it to the tasks' length: 1 for tasks of milliseconds or more, up to 8 for
    tiny ones. 0 turns it off: better balance for long, uneven tasks. ``python`` is the
    workers' interpreter (default: the master's own); it needs pymw-core installed and
    the master's Python minor version.
    """

    blocking_execute = False  # execute_task only queues the task on a pipe

    def __init__(self, num_workers: int | None = None, prefetch: int | None = None,
                 python: str | os.PathLike[str] | None = None) -> None:
        if num_workers is None:
            num_workers = _cpu_count()
        if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
            raise InterfaceError(
                f"num_workers must be a whole number of at least 1, not {num_workers!r}"
            )
        if prefetch is not None and (
            not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 0
        ):
            raise InterfaceError(
                f"prefetch must be None or a whole number of at least 0, not {prefetch!r}"
            )
        if python is not None and not (
            isinstance(python, (str, os.PathLike)) and os.fspath(python)
        ):
            raise InterfaceError(f"python must be the path of a Python interpreter, not {python!r}")
        self.num_workers = num_workers
        self.prefetch = prefetch
        self.python = sys.executable if python is None else os.fspath(python)
        if shutil.which(self.python) is None:  # cheap, and every worker start would fail
            raise InterfaceError(f"the worker interpreter {self.python!r} cannot be started: "
                                 "no such file, or not executable (give a path, or a name "
                                 "found on PATH)")
        self._lock = threading.Lock()
        # Starts under way (between the first `_closed` check and registering the
        # process): close() waits for them, so nothing a start makes outlives it.
        self._starting = 0
        self._start_done = threading.Condition(self._lock)
        self._processes: list[_Process] = []  # every live process (cleanup ends them)
        self._serving: list[_Process] = []  # those whose hello was checked (announced "up")
        self._master: Any = None
        self._closed = False
        self._started = 0
        self._restarts = 0
        self._start_failures = 0
        self._gave_up: str | None = None  # why no process will ever start
        for _ in range(num_workers):
            self._spawn()

    # -- hooks ------------------------------------------------------------------------------

    def attach_master(self, master: Any) -> None:
        with self._lock:
            self._master = master
            processes = list(self._serving)
            gave_up = self._gave_up
        for process in processes:
            master.worker_up(process)
        if gave_up is not None:  # the processes died before there was a master to tell
            master.workers_exhausted(gave_up)

    def get_available_workers(self) -> list[_Process]:
        """Free slots, idle processes first (:func:`pymw_core.pacing.spread`), so work
        spreads before it queues."""
        with self._lock:
            return spread(self._processes)

    def reserve_worker(self, worker: _Process) -> None:
        with self._lock:
            worker.in_flight += 1

    def worker_finished(self, worker: _Process) -> None:
        with self._lock:
            worker.finished(time.monotonic())

    def execute_task(self, task: Any, worker: _Process) -> None:
        payload = task.payload
        if wire.blob_size(payload.args) + len(payload.code[2] or b"") > _INLINE_SEND_LIMIT:
            worker.send_big(task)  # a big write could wait on a busy worker's pipe
        else:
            _send(worker, task)

    def stop_task(self, task: Any, worker: _Process) -> None:
        """Ask the process to stop this attempt: dropped if it waits there, the process
        exits (and is replaced) if it runs it. The cancel names the attempt, so a task
        that ended meanwhile is left alone and the next one is never hit. A process
        stuck in C code that cannot act on it is killed after ``_STOP_GRACE`` seconds."""
        connection = worker.connection
        if connection is None or not connection.cancel(task):
            return
        timer = threading.Timer(_STOP_GRACE, _force_stop, (worker, task))
        timer.daemon = True
        timer.start()

    def get_status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "workers": len(self._processes),
                "pids": [p.pid for p in self._processes],
                # What os.getpid() says in a task: each started process's child.
                "task_pids": [p.connection.hello["pid"] for p in self._processes
                              if p.connection is not None and p.connection.hello],
                "busy": sum(1 for p in self._processes if p.in_flight),
                "restarts": self._restarts,
            }

    def cleanup(self) -> None:
        """Stop every process at once (running tasks are abandoned) and remove scratch.

        Each worker's guardian ends its whole process tree on SIGTERM; one that has not
        gone within ``_CLOSE_GRACE`` seconds has its session killed. No stream a reader
        thread reads is closed here (that close would wait for the read): each reader
        sees the end of its pipe once the process tree is gone, and closes it.
        """
        with self._lock:
            self._closed = True
            # A start under way (a replacement on a reader thread) sees `_closed` when
            # it is done and undoes itself; wait for that. Starts call no foreign code.
            self._start_done.wait_for(lambda: self._starting == 0, timeout=_START_WAIT)
            processes = list(self._processes)
            self._processes.clear()
        for process in processes:
            _kill(process.popen)
            process.stop_sending()
        deadline = time.monotonic() + _CLOSE_GRACE
        for process in processes:
            try:
                process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # pragma: no cover - a guardian that hangs
                _kill_session(process.popen)
            try:
                process.popen.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
        for process in processes:
            shutil.rmtree(process.scratch, ignore_errors=True)

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self) -> _Process | None:
        """Start one worker process (lock not held); None once closing."""
        with self._lock:
            if self._closed:
                return None
            index = self._started
            self._started += 1
            self._starting += 1
        try:
            process, failure = self._start(index)
        finally:
            with self._lock:
                self._starting -= 1
                self._start_done.notify_all()
        if failure is not None:
            self._cannot_start(failure)
        if process is None:
            return None
        # Announced by its reader once its hello is checked (_on_hello), never before:
        # its "up" and its "down" come from that one thread, in that order.
        process.connection.start()  # type: ignore[union-attr]
        return process

    def _start(self, index: int) -> tuple[_Process | None, str | None]:
        """Make one process and register it: (process, why none can start).

        cleanup() waits while this runs; it calls no code outside this module.
        """
        # One directory per process, no shared root: a worker whose master was killed
        # removes its own on the way out, and then nothing is left.
        scratch = tempfile.mkdtemp(prefix=f"pymw-local-w{index}-")
        try:
            popen = subprocess.Popen(
                [self.python, "-m", "pymw_core.worker", "--scratch", scratch],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=scratch,
                start_new_session=True,  # the terminal's Ctrl-C goes to the master: it cleans up
            )
        except OSError as exc:  # no such interpreter, or not executable: every start would fail
            shutil.rmtree(scratch, ignore_errors=True)
            return None, (f"the worker interpreter {self.python!r} cannot be started: "
                                f"{exc.strerror or exc}")
        _grow_pipe(popen.stdin)
        _grow_pipe(popen.stdout)  # a big result then crosses in a few reads, not one per 64 KiB
        process = _Process(index, self.prefetch, popen, scratch)
        process.connection = WorkerConnection(
            popen.stdout,  # type: ignore[arg-type]
            popen.stdin,  # type: ignore[arg-type]
            name=f"local-{index} (pid {popen.pid})",
            on_closed=lambda conn, reason: self._on_exit(process, reason),
            describe_loss=lambda: self._describe_exit(process),
            on_hello=lambda conn: self._on_hello(process),
        )
        threading.Thread(
            target=_drain_stderr, args=(process,), name=f"pymw-stderr-{index}", daemon=True
        ).start()
        with self._lock:
            closed = self._closed
            if not closed:
                self._processes.append(process)
        if closed:  # close() came meanwhile, and waits for this start to be undone
            _kill_session(popen)  # guardian and worker alike, whether or not it forked yet
            popen.wait()
            for stream in (popen.stdin, popen.stdout):
                stream.close()  # type: ignore[union-attr]
            shutil.rmtree(scratch, ignore_errors=True)
            return None, None
        return process, None

    def _describe_exit(self, process: _Process) -> str:
        try:
            code = process.popen.wait(timeout=5)  # its guardian ends what is left first
        except subprocess.TimeoutExpired:
            _kill(process.popen)
            code = process.popen.wait()
        # The guardian writes a crashed task's last stderr lines just before it exits:
        # they are in the pipe, maybe not yet in stderr_tail. Once the guardian is gone
        # (it ended every other holder of the pipe first), the drain thread reads them
        # and then the pipe's end soon.
        process.stderr_ended.wait(_STDERR_SETTLE)
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        text = f"worker process {process.pid} {how}"
        tail = "".join(process.stderr_tail).strip()
        if tail:
            text += f"; its last output:\n{tail}"
        return text

    def _on_hello(self, process: _Process) -> None:
        """Its hello came (reader thread): announce it, or refuse it and give up."""
        connection = process.connection
        refusal = connection.error if connection is not None else None
        if refusal is not None:
            # Every replacement would run the same interpreter: no point in starting one.
            connection.stopping()  # type: ignore[union-attr]
            self._cannot_start(f"local worker processes cannot be used: {refusal}")
            _kill(process.popen)
            return
        with self._lock:
            if self._closed or process not in self._processes:
                return  # closing, or given up: no task will be matched any more
            process.serving = True
            self._serving.append(process)
            master = self._master
        if master is not None:
            master.worker_up(process)

    def _on_exit(self, process: _Process, reason: str) -> None:
        """A process ended: replace it, unless it never started (then maybe give up)."""
        with self._lock:
            if process in self._processes:
                self._processes.remove(process)
            if process.serving:
                self._serving.remove(process)
            closing = self._closed
            if process.connection is not None and process.connection.hello is None:
                self._start_failures += 1
            else:
                self._start_failures = 0
            # Processes that are still starting do not count: only one that said hello
            # shows this environment can run workers at all.
            ready = bool(self._serving)
            give_up = self._start_failures >= _START_FAILURES_ALLOWED and not ready
            if give_up:
                self._closed = True  # no more replacements: they would die the same way
        process.stop_sending()
        shutil.rmtree(process.scratch, ignore_errors=True)
        if closing:
            return
        if self._master is not None and process.serving:
            self._master.worker_down(process, reason)
        if give_up:
            self._cannot_start(f"local worker processes ({self.python}) die as they start "
                               f"({self._start_failures} in a row): {reason}")
            return
        self._restarts += 1
        self._spawn()

    def _cannot_start(self, reason: str) -> None:
        """No worker process will ever start: queued and later tasks fail with ``reason``."""
        with self._lock:
            self._closed = True  # no more starts or replacements: they would fail the same way
            first = self._gave_up is None
            self._gave_up = self._gave_up or reason
            master = self._master
        if first and master is not None:
            master.workers_exhausted(reason)


def _send_loop(process: _Process, outbox: SimpleQueue) -> None:
    for task in iter(outbox.get, None):
        _send(process, task)


def _force_stop(process: _Process, attempt: Any) -> None:
    """The cancel was not acted on in time: end the process (it still holds the attempt)."""
    connection = process.connection
    if connection is not None and connection.holds(attempt) and process.popen.poll() is None:
        connection.stopping()
        _kill(process.popen)


def _send(worker: _Process, task: Any) -> None:
    try:
        worker.connection.send(task)  # type: ignore[union-attr]
    except InterfaceError as exc:  # died between matching and sending: not the task's fault
        task.worker_lost(str(exc), started=False)


def _drain_stderr(process: _Process) -> None:
    """Pass the process's own stderr through (tasks' output is captured separately)."""
    try:
        pass_through(process.popen.stderr, process.stderr_tail)  # type: ignore[arg-type]
    finally:
        process.stderr_ended.set()


def _grow_pipe(stream: Any) -> None:
    """Linux lets a pipe hold up to 1 MiB; the default 64 KiB fills with a few tasks."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
    except (ImportError, OSError, ValueError):
        pass


def _kill(popen: subprocess.Popen) -> None:
    """End a worker and every process its tasks started, at once.

    The process we started is the worker's guardian (see ``pymw_core.guardian``): on
    SIGTERM it SIGKILLs the worker and all its descendants, then itself, so none of
    them outlives it. A SIGKILL would end the guardian alone and orphan the rest.
    """
    try:
        popen.send_signal(signal.SIGTERM)
    except OSError:
        pass


def _kill_session(popen: subprocess.Popen) -> None:
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except OSError:
        pass


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
