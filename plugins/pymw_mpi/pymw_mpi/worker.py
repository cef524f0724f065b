"""The MPI job a self-launched master starts: ``mpiexec -n N+1 python -m pymw_mpi.worker``.

Rank 0 is a relay: it connects back to the master over a socket and bridges it to
the worker ranks through a :class:`~pymw_mpi.hub.Hub`; ranks 1..N serve tasks
(:func:`pymw_mpi.rank.serve`). The master itself never initialises MPI.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from typing import Any

from pymw_core import wire
from pymw_mpi import protocol
from pymw_mpi.rank import EXIT_ORPHANED


class Relay:
    """Rank 0 of a self-launched job: the master's socket on one side, the hub on the other."""

    def __init__(self, conn: socket.socket, hub: Any) -> None:
        self.conn = conn
        self.hub = hub
        self.reader = conn.makefile("rb", buffering=1 << 16)
        self.writer = conn.makefile("wb", buffering=1 << 16)
        self.lock = threading.Lock()

    def _write(self, message: tuple) -> None:
        with self.lock:
            try:
                wire.write_message(self.writer, message)
            except (OSError, ValueError):
                pass  # the master is gone; the read loop notices and ends the job

    def rank_done(self, rank: int, reply: tuple) -> None:
        self._write(("from", rank, reply))

    def rank_lost(self, rank: int, reason: str) -> None:
        self._write(("lost", rank, reason))

    def serve(self, ready: dict[int, dict[str, Any]]) -> None:
        self.hub.attach(self)
        self._write(("hello", ready))
        try:
            while True:
                message = wire.read_message(self.reader)
                if message is None or message[0] == "bye":
                    break
                if message[0] == "to":
                    self.hub.send(message[1], message[2])
                elif message[0] == "stop":
                    self.hub.stop(message[1], message[2])
        except (OSError, EOFError, ValueError):
            pass
        self.hub.detach(self)
        self.hub.close(grace=1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pymw_mpi.worker")
    parser.add_argument("--connect", required=True, help="HOST:PORT of the master")
    parser.add_argument("--scratch", help="parent folder of the ranks' scratch folders")
    parser.add_argument("--start-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() != 0:
        from pymw_mpi.rank import serve

        serve(comm, _scratch(args.scratch, comm.Get_rank()))
        return
    from pymw_mpi.hub import Hub

    host, _, port = args.connect.rpartition(":")
    conn = socket.create_connection((host, int(port)), timeout=args.start_timeout)
    conn.settimeout(None)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small frames go at once
    conn.sendall(wire.encode(("relay", os.environ.get(protocol.TOKEN_ENV, ""))))
    _exit_with_launcher()
    hub = Hub(comm, scratch=args.scratch)
    try:
        ready = hub.wait_ready(args.start_timeout)
    except Exception as exc:
        wire.write_message(conn.makefile("wb"), ("error", str(exc)))
        raise
    Relay(conn, hub).serve(ready)
    sys.stdout.flush()
    if hub.lost_any:  # MPI_Finalize would wait for the dead rank for ever
        from pymw_mpi.rank import leave_without_finalize

        leave_without_finalize()


def _exit_with_launcher() -> None:
    """A killed ``mpiexec`` leaves its ranks running: the relay then ends, and with it the
    lifelines, so every rank exits and the master hears that the job is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="pymw-mpi-parent", daemon=True).start()


def _scratch(parent: str | None, rank: int) -> str | None:
    if not parent:
        return None
    path = os.path.join(parent, f"rank{rank}")
    os.makedirs(path, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
