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
LIFELINE_TIMEOUT = 60.0


class Backoff:
    """Naps that grow from nothing to ``BACKOFF_CAP`` while a poll finds nothing.

    MPI's own blocking receive spins a core per rank; on a machine with as many ranks
    as cores that starves the tasks. A poll that naps costs at most a millisecond of
    latency after an idle spell and nothing while messages keep coming.
    """

    __slots__ = ("delay",)

    def __init__(self) -> None:
        self.delay = 0.0

    def reset(self) -> None:
        self.delay = 0.0

    def next(self) -> float:
        self.delay = min(BACKOFF_CAP, self.delay * 2 if self.delay else 1e-5)
        return self.delay

    def nap(self) -> None:
        time.sleep(self.next())


def lifeline_address(rank0_host: str, port: int) -> tuple[str, int]:
    """Loopback when this rank shares rank 0's host, else rank 0's host name."""
    if socket.gethostname() == rank0_host:
        return ("127.0.0.1", port)
    return (rank0_host, port)


def new_token() -> str:
    return os.urandom(16).hex()
