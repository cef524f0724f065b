"""Rank 0's side of the worker ranks: one thread moves every MPI message, lifelines watch.

Used in both modes: by the user's program itself under ``mpiexec ... -m pymw_mpi``,
and by the relay that a self-launched master starts as rank 0. Only the pump thread
calls MPI after start-up, so the hub needs no more than ``MPI_THREAD_SERIALIZED``.
"""

from __future__ import annotations

import atexit
import hmac
import queue
import shutil
import socket
import tempfile
import threading
import time
from typing import Any, Protocol

from pymw_core import wire
from pymw_core.errors import InterfaceError
from pymw_mpi import protocol


def _job_folder() -> str | None:
    """Open MPI's folder for this job, which ``mpiexec`` removes when the job ends, if any.

    On Ctrl-C ``mpiexec`` SIGKILLs rank 0 a few milliseconds after its SIGTERM, before
    :meth:`Hub.close` can remove the ranks' scratch folders: inside this one they go too.
    """
    import os

    folder = os.environ.get("OMPI_MCA_orte_jobfam_session_dir", "")  # noqa: SIM112 (its name)
    return folder if folder and os.path.isdir(folder) else None


class Listener(Protocol):
    """What a hub reports to: the master's interface, or the relay's link to the master."""

    def rank_done(self, rank: int, reply: tuple) -> None: ...

    def rank_lost(self, rank: int, reason: str) -> None: ...


KILL_MARGIN = 2.0  # seconds past the rank's own STOP_GRACE before rank 0 kills it


class _Rank:
    __slots__ = ("alive", "discard", "info", "kill_line", "lifeline", "lock", "number",
                 "outstanding", "stopping", "unanswered")

    def __init__(self, number: int) -> None:
        self.number = number
        self.info: dict[str, Any] | None = None
        self.lifeline: socket.socket | None = None
        self.kill_line: socket.socket | None = None  # closing it ends the rank (the kernel)
        self.unanswered: set[Any] = set()  # ids of the tasks sent and not answered
        self.stopping: set[Any] = set()  # ids stopped, not answered, not said to be idle
        self.outstanding = 0  # tasks sent and not answered
        self.discard = 0  # answers still due to a listener that has detached
        self.alive = True
        self.lock = threading.Lock()  # lifeline writes


class Hub:
    """Ranks 1..size-1 of ``comm`` as workers of rank 0 (this process)."""

    def __init__(self, comm: Any, scratch: str | None = None) -> None:
        """Collective: every rank of ``comm`` must call :func:`pymw_mpi.rank.serve` meanwhile.

        ``scratch``: the folder the ranks on this host keep their scratch folders in (made
        here, and removed at :meth:`close`, when not given): a rank that is killed
        cannot remove its own.
        """
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.size = comm.Get_size()
        self._token = protocol.new_token()
        hosts = comm.gather(socket.gethostname(), root=0)
        one_host = all(h == hosts[0] for h in hosts)
        self._server = socket.create_server(("127.0.0.1" if one_host else "", 0), backlog=64)
        port = self._server.getsockname()[1]
        self.lost_any = False
        self._own_scratch = scratch is None
        self.scratch = scratch or tempfile.mkdtemp(prefix="pymw-mpi-", dir=_job_folder())
        if self._own_scratch:  # also when the program ends without closing its master
            atexit.register(shutil.rmtree, self.scratch, True)
        comm.bcast((hosts[0], port, self._token, self.scratch), root=0)
        self._ranks = {k: _Rank(k) for k in range(1, self.size)}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listener: Listener | None = None
        self._outbox: queue.SimpleQueue[tuple[int, tuple] | None] = queue.SimpleQueue()
        self._closing = False
        threading.Thread(target=self._accept, name="pymw-mpi-lifelines", daemon=True).start()
        self._pump_thread = threading.Thread(target=self._pump, name="pymw-mpi-pump", daemon=True)
        self._pump_thread.start()

    # -- start-up ------------------------------------------------------------------------

    def wait_ready(self, timeout: float) -> dict[int, dict[str, Any]]:
        """Every rank's hello (those that died meanwhile are left out), within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(r.alive and (r.info is None or r.lifeline is None
                                   or r.kill_line is None) for r in self._ranks.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    waiting = [r.number for r in self._ranks.values() if r.alive and (
                        r.info is None or r.lifeline is None or r.kill_line is None)]
                    raise InterfaceError(
                        f"MPI ranks {waiting} did not report within {timeout:.0f} s")
                self._changed.wait(left)
            return {r.number: r.info for r in self._ranks.values() if r.alive and r.info}

    def attach(self, listener: Listener) -> bool:
        """Report to ``listener`` from now on; False if another listener is attached."""
        with self._lock:
            if self._listener is not None and self._listener is not listener:
                return False
            self._listener = listener
            return True

    def detach(self, listener: Listener) -> None:
        """Stop reporting to ``listener``; answers still due for its tasks are dropped.

        A rank answers in the order it was sent tasks, so counting is exact: the next
        listener never receives an answer meant for the one before.
        """
        with self._lock:
            if self._listener is not listener:
                return
            self._listener = None
            for rank in self._ranks.values():
                rank.discard = rank.outstanding

    def idle(self, rank: int) -> bool:
        """Whether the rank owes no answer to anyone."""
        with self._lock:
            return self._ranks[rank].outstanding == 0

    # -- the master's calls --------------------------------------------------------------

    def send(self, rank: int, message: tuple) -> None:
        """Queue ``message`` for ``rank``; returns at once. Ordered per rank."""
        if message[0] == "task":
            with self._lock:
                self._ranks[rank].outstanding += 1
                self._ranks[rank].unanswered.add(message[1])
        self._outbox.put((rank, message))

    def stop(self, rank: int, task_id: Any) -> None:
        """Interrupt ``task_id`` on ``rank`` if it runs there now (else nothing happens).

        The rank exits by itself if the task has not unwound within its ``STOP_GRACE``;
        if it has neither answered nor said the task was not running there by
        ``KILL_MARGIN`` seconds later (a task holding the GIL in C code keeps every
        thread of the rank from running), rank 0 ends it through its kill line.
        """
        from pymw_mpi.rank import STOP_GRACE

        target = self._ranks[rank]
        with self._lock:
            if task_id not in target.unanswered:
                return
            target.stopping.add(task_id)
        self._control(target, ("stop", task_id))
        timer = threading.Timer(STOP_GRACE + KILL_MARGIN, self._stop_overdue, (target, task_id))
        timer.daemon = True
        timer.start()

    def _stop_overdue(self, rank: _Rank, task_id: Any) -> None:
        with self._lock:
            overdue = rank.alive and task_id in rank.stopping
            rank.stopping.discard(task_id)
        if overdue:
            self._kill(rank)

    def _kill(self, rank: _Rank) -> None:
        """End ``rank`` now, whatever it is doing: the kernel kills it (its kill line)."""
        with rank.lock:
            conn, rank.kill_line = rank.kill_line, None
        if conn is not None:
            conn.close()

    def close(self, grace: float = 5.0) -> None:
        """Ask every rank to leave; after ``grace`` seconds, tell the stragglers to exit."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            live = [r for r in self._ranks.values() if r.alive]
        # With a rank gone, MPI_Finalize would wait for it for ever (it is collective):
        # the survivors are told to leave without it, and so does this process.
        self.lost_any = any(not r.alive for r in self._ranks.values())
        for rank in live:
            self._outbox.put((rank.number, ("bye", self.lost_any)))
        deadline = time.monotonic() + grace
        with self._changed:
            while any(r.alive for r in live) and time.monotonic() < deadline:
                if all(r.outstanding == 0 or not r.alive for r in live):
                    self._changed.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                else:
                    break  # ranks still run tasks: they will not see "bye" in time
        for rank in live:
            if rank.alive and rank.outstanding:
                self._control(rank, ("exit",))
        with self._changed:
            while any(r.alive for r in live) and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
        # Still there: stuck where no thread of theirs runs (C code holding the GIL).
        stragglers = [r for r in live if r.alive]
        if stragglers:
            self.lost_any = True  # killed ranks never reach MPI_Finalize: nor may we
            for rank in stragglers:
                self._kill(rank)
            until = time.monotonic() + KILL_MARGIN
            with self._changed:
                while any(r.alive for r in stragglers) and time.monotonic() < until:
                    self._changed.wait(max(0.0, until - time.monotonic()))
        if self._own_scratch:  # the ranks are gone; on Ctrl-C mpiexec's SIGKILL comes soon
            shutil.rmtree(self.scratch, ignore_errors=True)
        self._outbox.put(None)
        self._pump_thread.join(timeout=5)
        self._server.close()

    # -- threads -------------------------------------------------------------------------

    def _pump(self) -> None:
        """Send what is queued, receive what has come; nap only while nothing moves."""
        comm, mpi = self.comm, self._mpi
        status = mpi.Status()
        pending: list[Any] = []
        backoff = protocol.Backoff()
        protocol.precise_naps()
        item: tuple[int, tuple] | None = None
        running = True
        flush_until = 0.0
        while True:
            moved = False
            while running:
                if item is None:
                    try:
                        item = self._outbox.get_nowait()
                    except queue.Empty:
                        break
                if item is None:  # close(): finish sending what is in flight, then stop
                    running = False
                    flush_until = time.monotonic() + 2.0
                    break
                rank, message = item
                item = None
                if self._ranks[rank].alive:
                    pending.append(comm.isend(message, dest=rank, tag=protocol.TASKS))
                moved = True
            if pending:
                pending = [r for r in pending if not r.Test()]
            while True:
                found = comm.improbe(source=mpi.ANY_SOURCE, tag=protocol.REPLIES, status=status)
                if found is None:
                    break
                self._received(status.Get_source(), found.recv())
                moved = True
            if not running:
                # a send to a rank that died never completes: give up on it after a while
                if not pending or time.monotonic() > flush_until:
                    return
                backoff.nap()
            elif moved:
                backoff.reset()
            else:
                try:
                    item = self._outbox.get(timeout=backoff.next())
                except queue.Empty:
                    pass
                else:
                    if item is None:
                        running = False
                        flush_until = time.monotonic() + 2.0

    def _received(self, source: int, message: tuple) -> None:
        rank = self._ranks[source]
        kind = message[0]
        if kind == "hello":
            with self._changed:
                rank.info = dict(message[1], rank=source)
                self._changed.notify_all()
            return
        if kind != "done":
            return
        with self._changed:
            rank.outstanding -= 1
            rank.unanswered.discard(message[1])
            rank.stopping.discard(message[1])
            if rank.discard:
                rank.discard -= 1
                listener = None
            else:
                listener = self._listener
            self._changed.notify_all()
        if listener is not None:
            listener.rank_done(source, message)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._watch, args=(conn,), name="pymw-mpi-lifeline",
                             daemon=True).start()

    def _watch(self, conn: socket.socket) -> None:
        """Hold one rank's lifeline until it breaks: then that rank is gone."""
        conn.settimeout(protocol.LIFELINE_TIMEOUT)
        reader = conn.makefile("rb")
        try:
            hello = wire.read_message(reader)
        except (OSError, EOFError, ValueError):
            hello = None
        if (not isinstance(hello, tuple) or len(hello) != 3
                or hello[0] not in ("lifeline", "killline") or hello[1] not in self._ranks
                or not hmac.compare_digest(str(hello[2]), self._token)):
            conn.close()
            return
        rank = self._ranks[hello[1]]
        conn.settimeout(None)
        if hello[0] == "killline":  # held, never read: closing it is the kill
            with rank.lock:
                rank.kill_line = conn
            with self._changed:
                self._changed.notify_all()
            return
        with self._changed:
            rank.lifeline = conn
            self._changed.notify_all()
        try:
            while True:
                message = wire.read_message(reader)
                if message is None:
                    break
                if message[0] == "idle":  # a stop it had nothing to do with
                    with self._lock:
                        rank.stopping.discard(message[1])
        except (OSError, EOFError, ValueError):
            pass
        with self._changed:
            rank.alive = False
            rank.lifeline = None
            closing = self._closing
            listener = self._listener
            self._changed.notify_all()
        conn.close()
        with rank.lock:  # the rank is gone: its kill line has nothing left to end
            kill_line, rank.kill_line = rank.kill_line, None
        if kill_line is not None:
            kill_line.close()
        if listener is not None and not closing:
            info = rank.info or {}
            where = f"pid {info['pid']} on {info['host']}" if info else "never started"
            listener.rank_lost(rank.number, f"MPI rank {rank.number} ({where}) ended")

    def _control(self, rank: _Rank, message: tuple) -> None:
        with rank.lock:
            conn = rank.lifeline
            if conn is None:
                return
            try:
                conn.sendall(wire.encode(message))
            except OSError:
                pass

    def live_ranks(self) -> list[int]:
        with self._lock:
            return [r.number for r in self._ranks.values() if r.alive]
