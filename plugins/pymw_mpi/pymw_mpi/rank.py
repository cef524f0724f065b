"""A worker rank: PyMW's worker runtime fed by MPI messages from rank 0.

The main thread receives ``task`` messages, runs each with
:class:`pymw_core.worker.Runtime` and sends the ``done`` reply back. A second thread
holds the lifeline to rank 0 (see :mod:`pymw_mpi.protocol`), so a control message is
acted on while a task runs: ``stop`` interrupts the task if it is the one running
(an exception raised in the main thread; if the task is stuck in C code past
``STOP_GRACE`` seconds, the rank exits), and a broken lifeline means rank 0 is gone,
so the rank exits rather than outlive its master. Both need that thread to run; a
task holding the GIL in C code never lets it, so rank 0 also holds the rank's kill
line (:func:`pymw_mpi.protocol.arm_kill_line`), by which the kernel ends the rank.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import socket
import sys
import threading
import time
from typing import Any

from pymw_core import wire
from pymw_core.worker import Runtime, worker_info
from pymw_mpi import protocol

STOP_GRACE = 3.0  # seconds a stopped task may take to unwind before the rank exits
EXIT_STOPPED = 75  # the rank's exit status when a stopped task would not unwind
EXIT_ORPHANED = 76  # the rank's exit status when rank 0 went away


class TaskStopped(BaseException):  # a BaseException: `except Exception` must not eat it
    """Raised inside a task that the master stopped (cancelled or timed out)."""


class _Withdrawn(BaseException):
    """Raised by the serving thread in itself, to take back a stop that came too late."""


class _Lifeline:
    """The rank's TCP line to rank 0: control frames in, and death detection both ways."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.running: Any = None  # the id of the task the main thread runs, or None
        self.stopped = False  # a stop was raised in the main thread during the current task
        self.leaving = False
        self.main = threading.main_thread().ident or 0

    def listen(self) -> None:
        reader = self.conn.makefile("rb")
        try:
            while True:
                message = wire.read_message(reader)
                if message is None:
                    break
                if message[0] == "stop":
                    self._stop(message[1])
                elif message[0] == "exit":
                    os._exit(EXIT_STOPPED)
        except (OSError, EOFError, ValueError):
            pass
        if not self.leaving:
            os._exit(EXIT_ORPHANED)  # rank 0 went away: nobody will ever read our replies

    def _stop(self, task_id: Any) -> None:
        with self.lock:
            if self.running != task_id:  # done already, or never started here: nothing to
                try:  # stop, and rank 0 must not end this rank for not stopping it
                    self.conn.sendall(wire.encode(("idle", task_id)))
                except OSError:
                    pass
                return
            self.stopped = True
            _raise_in(self.main, TaskStopped)
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline:
            time.sleep(0.05)
            with self.lock:
                if self.running != task_id:
                    return
        # Stuck in C code: the rank exits, and the master learns of it through the lifeline.
        # The stop still pending for the main thread keeps CPython 3.11's pending flag set,
        # so this thread, if traced, would spin at its next Python call (coverage's os._exit
        # is one): an exception of its own, raised and caught here with no Python call
        # between (see _withdraw), clears the flag first.
        try:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(threading.get_ident()), ctypes.py_object(_Withdrawn))
            for _ in range(1_000_000):
                pass
        except _Withdrawn:
            pass
        os._exit(EXIT_STOPPED)

    def run(self, runtime: Runtime, message: tuple) -> tuple:
        task_id = message[1]
        try:
            try:
                with self.lock:
                    self.running = task_id
                return runtime.run(message)
            finally:
                with self.lock:
                    self.running = None
                    if self.stopped:  # gone off already, or still pending: either way, gone
                        self.stopped = False
                        _withdraw()
        except TaskStopped:
            return ("done", task_id, False, _stopped_blob(), "", "", 0.0)


def _stopped_blob() -> bytes:
    import pickle

    from pymw_core.errors import TaskCancelledError

    return pickle.dumps((TaskCancelledError("stopped by the master"), ""), wire.PROTOCOL)


def _raise_in(thread_id: int, exc: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


def _withdraw() -> None:
    """Take back a stop raised in this thread that has not gone off yet (if any).

    Not by clearing it (``PyThreadState_SetAsyncExc(id, NULL)``): on CPython 3.11 that
    leaves the interpreter's "pending" flag set for good, and a thread under a
    ``sys.settrace`` tracer (coverage, a debugger) then spins for ever at its next
    function call; the rank polled for a task it never saw. A harmless exception
    replaces the stop instead and goes off here, at the loop's first backward jump,
    which clears the flag on every version.
    """
    try:  # it may go off as soon as the call returns: the call is inside the try
        _raise_in(threading.get_ident(), _Withdrawn)
        for _ in range(1_000_000):  # bounded: never a hang, should the exception not come
            pass
    except _Withdrawn:
        pass


def leave_without_finalize(status: int = 0) -> None:
    """End this process now, skipping MPI_Finalize (collective: a dead rank blocks it)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def serve(comm: Any, scratch: str | None = None) -> None:
    """Serve rank 0 until it says ``bye``. Collective with :class:`pymw_mpi.hub.Hub`."""
    from mpi4py import MPI

    comm.gather(socket.gethostname(), root=0)
    host, port, token, parent = comm.bcast(None, root=0)
    rank = comm.Get_rank()
    if scratch is None and os.path.isdir(parent):  # rank 0's host: its folder, its cleanup
        scratch = os.path.join(parent, f"rank{rank}")
        os.makedirs(scratch, exist_ok=True)
    conn = socket.create_connection(protocol.lifeline_address(host, port),
                                    timeout=protocol.LIFELINE_TIMEOUT)
    conn.settimeout(None)
    conn.sendall(wire.encode(("lifeline", rank, token)))
    kill_line = socket.create_connection(protocol.lifeline_address(host, port),
                                         timeout=protocol.LIFELINE_TIMEOUT)
    kill_line.sendall(wire.encode(("killline", rank, token)))
    protocol.arm_kill_line(kill_line)
    lifeline = _Lifeline(conn)
    threading.Thread(target=lifeline.listen, name="pymw-mpi-lifeline", daemon=True).start()
    faulthandler.enable()  # a crash leaves a Python traceback on stderr
    os.dup2(2, 1)  # stray writes to fd 1 (C code, subprocesses) go to stderr, not stdout
    runtime = Runtime(scratch)
    skip_finalize = False
    try:
        comm.send(("hello", worker_info()), dest=0, tag=protocol.REPLIES)
        backoff = protocol.Backoff()
        protocol.precise_naps()
        status = MPI.Status()
        while True:
            found = comm.improbe(source=0, tag=protocol.TASKS, status=status)
            if found is None:
                backoff.nap()
                continue
            backoff.reset()
            message = found.recv()
            if message[0] == "bye":
                skip_finalize = len(message) > 1 and bool(message[1])
                break
            comm.send(lifeline.run(runtime, message), dest=0, tag=protocol.REPLIES)
    finally:
        protocol.disarm_kill_line(kill_line)  # first: rank 0 may close its end from now on
        lifeline.leaving = True
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()
        runtime.close()
        sys.stdout.flush()
    if skip_finalize:  # a rank died: MPI_Finalize would wait for it for ever
        leave_without_finalize()
