"""What travels between rank 0 and the worker ranks, and between the master and its relay.

MPI messages (mpi4py's pickled objects) carry the worker runtime's own frames:

    rank 0 -> rank k, tag TASKS:    ("task", task_id, ...) as ``payload.message`` builds it
                                    ("bye",)  -- finish and leave the serve loop
    rank k -> rank 0, tag REPLIES:  ("hello", worker_info)  once, then
                                    ("done", task_id, ...) for each task, in the order sent

Each worker rank also holds a *lifeline*: a TCP connection to rank 0 that carries
no task data. The kernel closes it when the rank's process ends however it ends, so
rank 0 learns of a dead rank at once (MPI without ULFM cannot say), and rank 0
sends control frames on it while the rank's main thread runs a task:

    rank 0 -> rank k:  ("stop", task_id)  -- interrupt that task if it is the one running
                       ("exit",)          -- leave now (the program ends with tasks running)
    rank k -> rank 0:  ("lifeline", rank, token)  once, on connecting
                       ("idle", task_id)  -- a stop for a task not running here: nothing done

and a *kill line*, a second connection that carries nothing at all: the rank arms it
(:func:`arm_kill_line`) so that the kernel SIGKILLs the rank as soon as rank 0 closes
its end, on purpose or by ending. That needs no thread of the rank to run, so it
works while a task holds the GIL in C code, where the lifeline's thread never runs:

    rank k -> rank 0:  ("killline", rank, token)  once, on connecting; then silence

In the self-launched mode the master talks to a relay (rank 0 of the job it started)
over a loopback socket, in :mod:`pymw_core.wire` frames:

    master -> relay:  ("to", rank, task_frame) | ("stop", rank, task_id) | ("bye",)
    relay -> master:  ("hello", {rank: worker_info}) | ("from", rank, done_frame)
                      | ("lost", rank, reason)
"""

from __future__ import annotations

import os
import socket
import time

TASKS = 11
REPLIES = 12
TOKEN_ENV = "PYMW_MPI_TOKEN"  # the relay's key to the master's socket, kept out of argv
BACKOFF_CAP = 0.001  # seconds: the longest nap of a rank polling for MPI messages
FIRST_NAP = 1e-5  # seconds: the shortest nap, kept while messages came lately
BUSY_SECONDS = 0.002  # seconds after a message during which naps stay the shortest
LIFELINE_TIMEOUT = 60.0
PR_SET_TIMERSLACK = 29  # prctl(2)


class Backoff:
    """Naps between polls: the shortest for ``BUSY_SECONDS`` after a message, then growing
    to ``BACKOFF_CAP``.

    MPI's own blocking receive spins a core per rank; on a machine with as many ranks
    as cores that starves the tasks, so a poll that finds nothing naps. Naps that grow
    at once would cost a back-and-forth of short tasks a grown nap at each hop (the
    next task comes a few hundred microseconds after the last reply), so while
    messages came lately the nap stays the shortest; after an idle spell the first
    message waits at most ``BACKOFF_CAP``.
    """

    __slots__ = ("busy_until", "delay")

    def __init__(self) -> None:
        self.delay = 0.0
        self.busy_until = 0.0  # no short naps before the first message

    def reset(self) -> None:
        """A message came: keep naps short for a while."""
        self.delay = 0.0
        self.busy_until = time.monotonic() + BUSY_SECONDS

    def next(self) -> float:
        """The next nap, in seconds."""
        if self.delay == 0.0 and time.monotonic() < self.busy_until:
            return FIRST_NAP
        self.delay = min(BACKOFF_CAP, self.delay * 2 if self.delay else FIRST_NAP)
        return self.delay

    def nap(self) -> None:
        time.sleep(self.next())


def precise_naps() -> None:
    """Let this thread's short naps be short: the kernel's default timer slack (50 µs)
    would stretch every 10 µs nap to 60 µs on each hop of a round trip. Linux only."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)  # 1 µs
    except (OSError, AttributeError):
        pass


def lifeline_address(rank0_host: str, port: int) -> tuple[str, int]:
    """Loopback when this rank shares rank 0's host, else rank 0's host name."""
    if socket.gethostname() == rank0_host:
        return ("127.0.0.1", port)
    return (rank0_host, port)


F_SETSIG = 10  # fcntl(2), Linux: the signal sent when the file becomes readable


def arm_kill_line(conn: socket.socket) -> None:
    """Have the kernel SIGKILL this process when anything arrives on ``conn`` or its peer
    closes it (O_ASYNC with F_SETSIG; Linux). No Python code runs then, so it works
    whatever the process's threads are doing."""
    import fcntl
    import signal
    import sys

    if not sys.platform.startswith("linux"):  # F_SETSIG is Linux's: elsewhere, no kill line
        return
    fd = conn.fileno()
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)


def disarm_kill_line(conn: socket.socket) -> None:
    """Close ``conn`` harmlessly: a forked child holding the same socket keeps no trigger."""
    import fcntl

    try:
        fd = conn.fileno()
        if fd >= 0:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_ASYNC)
    except OSError:
        pass
    conn.close()


def new_token() -> str:
    return os.urandom(16).hex()
