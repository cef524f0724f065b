"""The ``mpi`` interface: tasks on MPI ranks, as messages, with PyMW's worker runtime.

Two modes, one protocol (:mod:`pymw_mpi.protocol`):

* **under an MPI launch** (``mpiexec -n N python -m pymw_mpi prog.py``) the program
  is rank 0 and talks to ranks 1..N-1 through the :class:`~pymw_mpi.hub.Hub` that
  ``pymw_mpi.__main__`` set up;
* **self-launched** (a plain program) the master starts ``mpiexec`` itself, whose
  rank 0 is a relay connected back over a loopback socket. The master process never
  initialises MPI (with Open MPI that would leave an ``orted`` child for the life
  of the process, and MPI cannot be started twice in one process).

Each worker rank is a :class:`_Rank` here; its tasks are pipelined to it (the one it
runs plus ``prefetch`` behind), and answers are matched by task id.
"""

from __future__ import annotations

import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from queue import SimpleQueue
from typing import Any

from pymw_core import wire
from pymw_core.errors import InterfaceError
from pymw_core.pacing import PacedWorker, spread
from pymw_core.passthrough import pass_through
from pymw_core.unpack import deliver
from pymw_mpi import launched, launcher, protocol

_TAIL_LINES = 40


class _Rank(PacedWorker):
    """One worker rank and the tasks the master has put on it, the running one first."""

    def __init__(self, number: int, info: dict[str, Any], prefetch: int | None) -> None:
        super().__init__(prefetch)
        self.number = number
        self.info = info
        self.tasks: collections.deque[Any] = collections.deque()
        self.functions = wire.FunctionMirror()  # what the rank's runtime holds
        self.lost = False

    def __repr__(self) -> str:
        return f"<mpi rank {self.number} pid={self.info.get('pid')} on {self.info.get('host')}>"

    def __str__(self) -> str:  # what task errors name (see pymw_core.task.describe_worker)
        return f"mpi rank {self.number} (pid {self.info.get('pid')})"

    @property
    def host_name(self) -> str | None:
        return self.info.get("host")


class MPIInterface:
    """Runs tasks on MPI worker ranks (see docs/interfaces/mpi.md for every option).

    ``num_workers``: worker ranks (self-launched: default the CPU count; under a launch:
    default every rank but 0). ``launcher``: the program, or argument list, that starts
    the job (default ``mpiexec``); ``launcher_args``: more arguments for it (a host
    file, say). ``python``: the ranks' interpreter (default this one). ``prefetch`` as
    on ``local``. ``start_timeout``: seconds the ranks have to report.
    """

    blocking_execute = False  # execute_task only queues a message

    def __init__(
        self,
        num_workers: int | None = None,
        launcher: str | list[str] = "mpiexec",
        launcher_args: list[str] | tuple[str, ...] = (),
        python: str | None = None,
        prefetch: int | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        if num_workers is not None and (
            not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1
        ):
            raise InterfaceError(
                f"num_workers must be a whole number of at least 1, not {num_workers!r}")
        if prefetch is not None and (
            not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 0
        ):
            raise InterfaceError(
                f"prefetch must be None or a whole number of at least 0, not {prefetch!r}")
        if isinstance(launcher_args, str) or not all(isinstance(a, str) for a in launcher_args):
            raise InterfaceError(f"launcher_args must be a list of strings, not {launcher_args!r}")
        if not isinstance(start_timeout, (int, float)) or start_timeout <= 0:
            raise InterfaceError(f"start_timeout must be a positive number, not {start_timeout!r}")
        self.prefetch = prefetch
        self._lock = threading.Lock()
        self._closed = False
        self._master: Any = None
        self._lost = 0
        hub = launched.hub
        if hub is not None:
            self.mode = "under-launch"
            self._link: Any = _HubLink(hub, self)
            infos = self._link.start(num_workers, float(start_timeout))
        else:
            if _inside_mpi_job():  # (the parameter `launcher` hides the module here)
                raise InterfaceError(
                    "this program is one rank of an MPI job: start it as "
                    "'mpiexec -n N python -m pymw_mpi prog.py' so that only rank 0 runs it")
            self.mode = "self-launched"
            self._link = _RelayLink(self)
            infos = self._link.start(
                num_workers or _cpu_count(), launcher, list(launcher_args),
                python or sys.executable, float(start_timeout))
        self._ranks = {n: _Rank(n, info, prefetch) for n, info in sorted(infos.items())}
        _check_python(self._ranks.values())

    # -- hooks ------------------------------------------------------------------------------

    def attach_master(self, master: Any) -> None:
        self._master = master
        with self._lock:
            ranks = list(self._ranks.values())
        for rank in ranks:
            master.worker_up(rank)

    def get_available_workers(self) -> list[_Rank]:
        """Free slots, least busy rank first (:func:`pymw_core.pacing.spread`): an idle
        rank before any busy one's prefetch slot."""
        with self._lock:
            return spread(list(self._ranks.values()))

    def reserve_worker(self, worker: _Rank) -> None:
        with self._lock:
            worker.in_flight += 1

    def worker_finished(self, worker: _Rank) -> None:
        with self._lock:
            worker.finished(time.monotonic())

    def execute_task(self, task: Any, worker: _Rank) -> None:
        payload = task.payload
        with self._lock:  # held while queueing: a rank gets its messages in order
            if not (worker.lost or self._closed):
                fresh = worker.functions.needs_blob(payload.code)
                message = payload.message(task.id, send_code_blob=fresh)
                if worker.tasks:
                    task.started_at = 0.0  # waits behind another: its timeout starts later
                else:
                    task.started()
                worker.tasks.append(task)
                self._link.send(worker.number, message)
                return
        task.worker_lost(f"MPI rank {worker.number} is gone", started=False)

    def stop_task(self, task: Any, worker: _Rank) -> None:
        """Interrupt ``task`` on its rank if it is the one running there.

        The rank raises an exception inside the task and carries on serving; a task
        stuck in C code for 3 s makes the rank exit (then it is lost, as if killed).
        A task still waiting behind another is left alone: its answer is ignored.
        """
        with self._lock:
            running = worker.tasks[0] if worker.tasks else None
        if running is task:
            self._link.stop(worker.number, task.id)

    def get_status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mode": self.mode,
                "ranks": sorted(self._ranks),
                "workers": len(self._ranks),
                "pids": [r.info.get("pid") for r in self._ranks.values()],
                "busy": sum(1 for r in self._ranks.values() if r.tasks),
                "lost_ranks": self._lost,
                **self._link.status(),
            }

    def cleanup(self) -> None:
        """Stop the ranks' work (self-launched: end the whole MPI job, nothing left)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = [(r.number, r.tasks[0].id) for r in self._ranks.values() if r.tasks]
            self._ranks.clear()
        self._link.close(running)

    # -- reports from the link (hub or relay) ----------------------------------------------

    def rank_done(self, rank: int, reply: tuple) -> None:
        task_id = reply[1]
        with self._lock:
            worker = self._ranks.get(rank)
            if worker is None:
                return
            for index, task in enumerate(worker.tasks):  # noqa: B007 - used after the loop
                if task.id == task_id:
                    break
            else:
                return  # not ours (a task the rank was stopped for, answered late)
            del worker.tasks[index]
            if index == 0 and worker.tasks:  # the next one starts now: its timeout too
                worker.tasks[0].started()
        deliver(task, reply)

    def rank_lost(self, rank: int, reason: str) -> None:
        self._lose([rank], reason)

    def job_lost(self, reason: str) -> None:
        with self._lock:
            ranks = list(self._ranks)
        self._lose(ranks, reason)

    def _lose(self, numbers: list[int], reason: str) -> None:
        gone: list[tuple[_Rank, list[Any]]] = []
        with self._lock:
            if self._closed:
                return
            for number in numbers:
                worker = self._ranks.pop(number, None)
                if worker is None:
                    continue
                worker.lost = True
                gone.append((worker, list(worker.tasks)))
                worker.tasks.clear()
                self._lost += 1
            left = len(self._ranks)
        for worker, stranded in gone:
            for index, task in enumerate(stranded):
                task.worker_lost(reason, started=index == 0)
            if self._master is not None:
                self._master.worker_down(worker, reason)
        if gone and left == 0 and self._master is not None:
            self._master.workers_exhausted(f"no MPI worker rank is left: {reason}")


def _inside_mpi_job() -> bool:
    return launcher.inside_mpi_job()


def _check_python(ranks: Any) -> None:
    need = tuple(sys.version_info[:2])
    for rank in ranks:
        have = tuple(rank.info.get("python", ()))[:2]
        if have != need:
            raise InterfaceError(
                f"MPI rank {rank.number} runs Python {'.'.join(map(str, have))} "
                f"({rank.info.get('executable')}) but the master runs "
                f"{'.'.join(map(str, need))}: the minor versions must match")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _HubLink:
    """Under an MPI launch: this process is rank 0 and owns the hub."""

    def __init__(self, hub: Any, interface: MPIInterface) -> None:
        self.hub = hub
        self.interface = interface

    def start(self, num_workers: int | None, timeout: float) -> dict[int, dict[str, Any]]:
        ready = self.hub.wait_ready(timeout)
        if not ready:
            raise InterfaceError(
                "this MPI launch has no worker ranks: start it with mpiexec -n 2 or more")
        if num_workers is not None and num_workers > len(ready):
            raise InterfaceError(
                f"num_workers={num_workers} but this MPI launch has {len(ready)} worker "
                f"rank(s): start it with mpiexec -n {num_workers + 1}")
        if not self.hub.attach(self.interface):
            raise InterfaceError(
                "another Master('mpi') is open in this MPI launch: close it first "
                "(the worker ranks serve one master at a time)")
        numbers = sorted(ready)[: num_workers or len(ready)]
        return {n: ready[n] for n in numbers}

    def send(self, rank: int, message: tuple) -> None:
        self.hub.send(rank, message)

    def stop(self, rank: int, task_id: Any) -> None:
        self.hub.stop(rank, task_id)

    def status(self) -> dict[str, Any]:
        return {"mpi_world_size": self.hub.size}

    def close(self, running: list[tuple[int, Any]]) -> None:
        """Stop what runs, stop listening; the ranks stay for the next master."""
        for rank, task_id in running:
            self.hub.stop(rank, task_id)
        self.hub.detach(self.interface)


class _RelayLink:
    """Self-launched: ``mpiexec`` runs :mod:`pymw_mpi.worker`; its rank 0 relays to us."""

    def __init__(self, interface: MPIInterface) -> None:
        self.interface = interface
        self.popen: subprocess.Popen | None = None
        self.command: list[str] = []
        self.launch: list[str] = []  # the launcher and its arguments, without the ranks' command
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._outbox: SimpleQueue[tuple | None] = SimpleQueue()
        self._conn: socket.socket | None = None
        self._closing = False
        self.scratch = ""  # the ranks' scratch folders: removed here, a killed rank cannot

    # -- start ------------------------------------------------------------------------------

    def start(self, num_workers: int, launcher_spec: Any, launcher_args: list[str],
              python: str, timeout: float) -> dict[int, dict[str, Any]]:
        argv = launcher.resolve(launcher_spec)
        launcher.require_mpi4py()
        family = launcher.implementation(argv[0])
        token = protocol.new_token()
        server = socket.create_server(("127.0.0.1", 0))
        self.scratch = tempfile.mkdtemp(prefix="pymw-mpi-")
        try:
            port = server.getsockname()[1]
            self.launch = [
                *argv, *launcher.flags(family), *launcher.forward_env(family, protocol.TOKEN_ENV),
                *launcher_args, "-n", str(num_workers + 1)]
            self.command = [
                *self.launch,
                python, "-m", "pymw_mpi.worker", "--connect", f"127.0.0.1:{port}",
                "--start-timeout", str(timeout), "--scratch", self.scratch,
            ]
            # TMPDIR: Open MPI's own session folder goes into the scratch folder too, so
            # a job ended by force leaves nothing behind once close() removes it.
            env = dict(os.environ, **{protocol.TOKEN_ENV: token, "TMPDIR": self.scratch})
            self.popen = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # Ctrl-C goes to the master; cleanup ends the session
            )
            threading.Thread(target=pass_through, args=(self.popen.stdout, self.tail),
                             name="pymw-mpi-output", daemon=True).start()
            try:
                conn, reader, hello = self._handshake(server, token, timeout)
            except BaseException:
                launcher.end_job(self.popen, grace=0.0)
                raise
        except BaseException:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise
        finally:
            server.close()
        self._conn = conn
        writer = conn.makefile("wb", buffering=1 << 16)
        threading.Thread(target=self._read, args=(reader,), name="pymw-mpi-read",
                         daemon=True).start()
        threading.Thread(target=self._write, args=(writer,), name="pymw-mpi-write",
                         daemon=True).start()
        return {int(k): v for k, v in hello[1].items()}

    def _handshake(self, server: socket.socket, token: str,
                   timeout: float) -> tuple[socket.socket, Any, tuple]:
        deadline = time.monotonic() + timeout
        server.settimeout(0.1)
        while True:
            self._check_alive(deadline, timeout)
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            reader = conn.makefile("rb", buffering=1 << 16)
            try:
                first = wire.read_message(reader)
            except (OSError, EOFError, ValueError):
                first = None
            if isinstance(first, tuple) and first[:2] == ("relay", token):
                break
            conn.close()  # not our relay
        # One blocking read for the hello, bounded by the start deadline: after a timeout
        # the socket's file refuses every later read, so polling it with short timeouts
        # lost any hello slower than one poll (a loaded machine; ranks under coverage).
        # mpiexec ending meanwhile is noticed by a watch that unblocks the read.
        conn.settimeout(max(0.1, deadline - time.monotonic()))
        waiting = threading.Event()
        threading.Thread(target=self._unblock_if_launcher_ends, args=(conn, waiting),
                         name="pymw-mpi-start-watch", daemon=True).start()
        try:
            hello = wire.read_message(reader)
        except TimeoutError:
            self._check_alive(deadline, timeout)
            raise InterfaceError(  # the deadline passed (the check above says it first)
                f"the MPI job's ranks did not report within {timeout:.0f} s") from None
        except (OSError, EOFError, ValueError):
            hello = None
        finally:
            waiting.set()
        if hello is None:
            self._check_alive(time.monotonic() + 10, timeout, wait=True)
            raise InterfaceError(f"the MPI job's rank 0 hung up while starting: {self._last()}")
        if hello[0] == "error":
            raise InterfaceError(f"the MPI job did not start: {hello[1]}")
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small frames go at once
        return conn, reader, hello

    def _unblock_if_launcher_ends(self, conn: socket.socket, done: threading.Event) -> None:
        """While the hello is awaited: if mpiexec ends, shut the socket so the read returns."""
        popen = self.popen
        while not done.wait(0.2):
            if popen is not None and popen.poll() is not None:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return

    def _check_alive(self, deadline: float, timeout: float, wait: bool = False) -> None:
        popen = self.popen
        assert popen is not None
        if wait:
            try:
                popen.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        code = popen.poll()
        if code is not None:
            time.sleep(0.1)  # let the drain thread read the last words
            raise InterfaceError(_start_failure(code, list(self.tail), self.command[0]))
        if time.monotonic() > deadline:
            raise InterfaceError(
                f"the MPI job's ranks did not report within {timeout:.0f} s "
                f"({' '.join(self.command[:3])} ...): {self._last()}")

    def _last(self) -> str:
        lines = [line.strip() for line in self.tail if line.strip()]
        return lines[-1] if lines else "no output"

    # -- traffic ----------------------------------------------------------------------------

    def send(self, rank: int, message: tuple) -> None:
        self._outbox.put(("to", rank, message))

    def stop(self, rank: int, task_id: Any) -> None:
        self._outbox.put(("stop", rank, task_id))

    def status(self) -> dict[str, Any]:
        return {"launcher": self.launch,
                "launcher_pid": self.popen.pid if self.popen else None}

    def _write(self, writer: Any) -> None:
        for message in iter(self._outbox.get, None):
            try:
                wire.write_message(writer, message)
            except (OSError, ValueError):
                pass  # the relay is gone; the reader reports it
        try:
            wire.write_message(writer, ("bye",))
        except (OSError, ValueError):
            pass

    def _read(self, reader: Any) -> None:
        interface = self.interface
        reason = "the MPI job's rank 0 closed its connection"
        try:
            while True:
                message = wire.read_message(reader)
                if message is None:
                    break
                kind = message[0]
                if kind == "from":
                    interface.rank_done(message[1], message[2])
                elif kind == "lost":
                    interface.rank_lost(message[1], message[2])
        except Exception as exc:
            reason = f"the connection to the MPI job broke: {type(exc).__name__}: {exc}"
        if self._closing:
            return
        interface.job_lost(self._describe_end(reason))

    def _describe_end(self, reason: str) -> str:
        popen = self.popen
        assert popen is not None
        try:
            code = popen.wait(timeout=3)
        except subprocess.TimeoutExpired:
            return f"{reason} (mpiexec pid {popen.pid} still runs)"
        time.sleep(0.1)
        how = f"exited with status {code}" if code >= 0 else f"was killed by signal {-code}"
        return f"{reason}: the MPI job ({os.path.basename(self.command[0])}) {how}; " \
               f"last output: {self._last()}"

    def close(self, running: list[tuple[int, Any]]) -> None:
        """Say bye, give the job a moment to end by itself, then end every process of it."""
        self._closing = True
        self._outbox.put(None)
        if self.popen is not None:
            launcher.end_job(self.popen, grace=2.0)
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass


def _start_failure(code: int, tail: list[str], program: str) -> str:
    """One line that says why the job ended before its ranks reported, and what to do."""
    text = "".join(tail)
    if "as root" in text and ("OMPI_ALLOW_RUN_AS_ROOT" in text or "root" in text):
        return ("Open MPI refuses to run as root: set OMPI_ALLOW_RUN_AS_ROOT=1 and "
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1, or run as another user")
    if "No module named 'mpi4py'" in text or 'No module named "mpi4py"' in text:
        return "the MPI ranks' Python has no mpi4py: pip install mpi4py"
    if "No module named 'pymw_mpi" in text or "No module named 'pymw_core" in text:
        return "the MPI ranks' Python has no pymw-mpi: pip install pymw-mpi where the ranks run"
    lines = [line.strip() for line in tail if line.strip()]
    last = lines[-1] if lines else "no output"
    how = f"status {code}" if code >= 0 else f"signal {-code}"
    return f"{os.path.basename(program)} ended ({how}) before its ranks started: {last}"
