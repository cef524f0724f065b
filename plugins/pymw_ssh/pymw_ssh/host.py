"""One remote host: its connections, its workers, and a thread that keeps them running.

The host's thread brings the host up (connect, probe the Python, upload the runtime,
start the workers on channels), then watches it: a worker that dies alone is replaced;
a connection that breaks or stops answering heartbeats takes the whole host down, its
tasks go back to the master (each :class:`WorkerConnection` hands back what it held),
and the host is tried again after a back-off that doubles up to a minute. A host that
can never work (a refused key, the wrong Python) is marked failed at once.

Channels: a server allows ``MaxSessions`` (10 by default) per connection and the SFTP
channel counts. The first connection carries SFTP, keeps one channel free for control
commands (the clean-up), and up to ``max_sessions - 2`` workers; more workers get
more connections. Channels are opened one at a time per connection.
"""

from __future__ import annotations

import collections
import logging
import posixpath
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paramiko

from pymw_core.connection import WorkerConnection
from pymw_core.errors import InterfaceError
from pymw_core.pacing import PacedWorker
from pymw_ssh import remote, streams
from pymw_ssh.connect import Heartbeat, HostError, open_client
from pymw_ssh.sshconfig import Target

if TYPE_CHECKING:
    from pymw_ssh.interface import SSHInterface

log = logging.getLogger("pymw.ssh")

CONNECTING, UP, DOWN, FAILED, CLOSED = "connecting", "up", "down", "failed", "closed"
_FIRST_RETRY = 1.0
_LONGEST_RETRY = 60.0
_START_FAILURES_ALLOWED = 3  # workers dying before their hello, in a row, on a live host


@dataclass
class Settings:
    """The interface's options, checked, as every host reads them."""

    python: list[str]
    workers: int | None  # None: the host's CPU count
    prefetch: int | None  # tasks queued behind the running one; None: adapt to task length
    timeout: float
    remote_dir: str
    max_sessions: int
    heartbeat_interval: float
    heartbeat_timeout: float
    reconnect_attempts: int
    runtime: tuple[str, bytes]


class Link:
    """One SSH connection to a host and how many of its channels are taken."""

    def __init__(self, client: paramiko.SSHClient, index: int, heartbeat: float, name: str,
                 capacity: int) -> None:
        self.client = client
        self.transport: paramiko.Transport = client.get_transport()  # type: ignore[assignment]
        self.index = index
        self.capacity = capacity
        self.channels = 0
        self.lock = threading.Lock()  # channel opens go one at a time (paramiko shares errors)
        self.heartbeat = Heartbeat(self.transport, heartbeat, f"{name}-{index}")

    def alive(self) -> bool:
        return self.transport.is_active()

    def open_channel(self, timeout: float) -> paramiko.Channel | None:
        """A new session channel, or None when this connection has no room left."""
        with self.lock:
            if self.channels >= self.capacity or not self.alive():
                return None
            try:
                channel = self.transport.open_session(timeout=timeout)
            except paramiko.ChannelException:  # the server allows fewer than we thought
                self.capacity = self.channels
                return None
            self.channels += 1
            return channel

    def release(self) -> None:
        with self.lock:
            self.channels = max(0, self.channels - 1)

    def close(self) -> None:
        self.heartbeat.stop()
        try:
            self.client.close()
        except Exception:
            pass


class RemoteWorker(PacedWorker):
    """One worker runtime on one channel: a worker as the master's scheduler sees it.

    It holds ``depth`` tasks at once: the running one and those queued behind it
    (:class:`pymw_core.pacing.PacedWorker` adapts the depth to the tasks' length).
    """

    def __init__(self, host: Host, link: Link, serial: int, generation: int,
                 channel: paramiko.Channel, prefetch: int | None) -> None:
        self.host = host
        self.link = link
        self.serial = serial
        self.generation = generation
        self.channel = channel
        super().__init__(prefetch)
        self.pid: int | None = None
        self.run_dir = host._run_dir
        self.name = f"{host.name}/w{serial}"
        self.stderr = streams.StderrDrain(channel, self.name)
        self.writer = streams.ChannelWriter(channel, self.name)
        self.connection = WorkerConnection(
            streams.reader(channel), self.writer, name=self.name,  # type: ignore[arg-type]
            on_closed=lambda conn, reason: host._worker_closed(self, reason),
            describe_loss=lambda: host._describe_loss(self),
        )

    def __repr__(self) -> str:
        return f"<ssh worker {self.name} pid={self.pid}>"

    def __str__(self) -> str:  # what task errors name (see pymw_core.task.describe_worker)
        return f"ssh-{self.name}" + (f" (pid {self.pid})" if self.pid else "")

    @property
    def host_name(self) -> str:
        return self.host.name


class Host:
    """A host's state and the thread that manages it. ``state`` is one of the constants above."""

    def __init__(self, target: Target, settings: Settings, owner: SSHInterface,
                 workers: int | None) -> None:
        self.target = target
        self.name = target.name
        self.settings = settings
        self.wanted = workers if workers is not None else settings.workers
        self._owner = owner
        self._lock = owner._lock  # guards workers, their free slots, and state
        self.state = CONNECTING
        self.error: str | None = None
        self.workers: list[RemoteWorker] = []
        self.links: list[Link] = []
        self.info: dict[str, Any] = {}
        self.generation = 0
        self.reconnects = 0
        self.tasks_done = 0
        self.retry_at: float | None = None
        self.first_attempt = threading.Event()
        self._run_base = remote.new_run_id()
        self._runs: dict[str, list[int]] = {}  # run dir -> pids of its workers
        self._run_dir = ""
        self._runtime_path = ""
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_lock = threading.Lock()
        self._control_lock = threading.Lock()
        self._uploaded: set[tuple[int, str]] = set()
        self._serial = 0
        self._dead: collections.deque[RemoteWorker] = collections.deque()
        self._start_failures = 0
        self._lost_reason: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pymw-host-{self.name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop every worker, clean up remotely, and close."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # -- what the interface asks ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            workers = list(self.workers)
        row: dict[str, Any] = {
            "state": self.state,
            "workers": len(workers),
            "busy": sum(1 for w in workers if w.in_flight),
            "connections": sum(1 for link in self.links if link.alive()),
            "tasks_done": self.tasks_done,
            "reconnects": self.reconnects,
            "error": self.error,
        }
        if self.info:
            row["python"] = ".".join(map(str, self.info["python"]))
            row["cpus"] = self.info["cpus"]
        if self.state == DOWN and self.retry_at is not None:
            row["retry_in"] = round(max(0.0, self.retry_at - time.monotonic()), 1)
        return row

    def has_files(self, files: list[tuple[str, str]]) -> bool:
        """Whether the host already holds these files as they are now (no upload needed)."""
        generation = self.generation
        for _, path in files:
            digest = remote.known_digest(path)
            if digest is None or (generation, digest) not in self._uploaded:
                return False
        return True

    def remote_files(self, files: list[tuple[str, str]]) -> dict[str, str]:
        """Upload what the host lacks of ``files``; their remote paths by name.

        Raises :class:`HostError` when the host is gone (the task was not started) and
        InterfaceError when the host is up but refused the file.
        """
        digests = [(name, path, remote.file_digest(path)) for name, path in files]
        sftp, run, generation = self._sftp, self._run_dir, self.generation
        if sftp is None or self.state != UP:
            raise HostError(f"host {self.name} is {self.state}")
        found = {}
        for name, path, digest in digests:
            target = posixpath.join(run, "files", digest)
            key = (generation, digest)
            if key not in self._uploaded:
                with self._sftp_lock:
                    if key not in self._uploaded:
                        try:
                            remote.upload(sftp, path, target, 0o600)
                        except (OSError, EOFError, paramiko.SSHException) as exc:
                            if not self.links or not self.links[0].alive():
                                raise HostError(f"host {self.name} went away while receiving "
                                                f"{name}: {exc}") from exc
                            raise InterfaceError(f"host {self.name} refused the data file "
                                                 f"{name} ({path}): {exc}") from exc
                        self._uploaded.add(key)
            found[name] = target
        return found

    # -- the host's thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._lifecycle()
        except Exception as exc:  # a bug here must not leave the master waiting for ever
            log.exception("host %s: its manager thread failed", self.name)
            self.error = f"host {self.name}: internal error: {type(exc).__name__}: {exc}"
            self._teardown(self.error)
            self.state = FAILED
            self._owner._host_changed(self)
        finally:
            self.first_attempt.set()

    def _lifecycle(self) -> None:
        failures = 0
        delay = _FIRST_RETRY
        was_up = False
        while not self._stop.is_set():
            self.state = CONNECTING
            try:
                self._bring_up()
            except Exception as exc:
                if self._stop.is_set():
                    break  # closing: _close_remote below cleans what this attempt left
                self._teardown()
                failures += 1
                permanent = getattr(exc, "permanent", False)
                self.error = str(exc) if isinstance(exc, (HostError, InterfaceError)) else (
                    f"host {self.name}: {type(exc).__name__}: {exc}")
                if permanent or failures > self.settings.reconnect_attempts:
                    if not permanent:
                        self.error += f" (gave up after {failures} attempts)"
                    self.state = FAILED
                    if self.first_attempt.is_set():  # at start the interface reports it
                        log.warning("giving up on %s", self.error)
                    self.first_attempt.set()
                    self._owner._host_changed(self)
                    return
                self.state = DOWN
                self.retry_at = time.monotonic() + delay
                if self.first_attempt.is_set():
                    log.info("%s; trying again in %.0f s", self.error, delay)
                self.first_attempt.set()
                self._owner._host_changed(self)
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, _LONGEST_RETRY)
                continue
            if was_up:
                self.reconnects += 1
                log.warning("host %s is back with %d workers", self.name, len(self.workers))
            elif self.generation > 1:
                log.warning("host %s is up now with %d workers", self.name, len(self.workers))
            was_up = True
            failures = 0
            delay = _FIRST_RETRY
            self.error = None
            self.retry_at = None
            self.state = UP
            self.first_attempt.set()
            self._owner._host_changed(self)
            reason = self._watch()
            if reason is None or self._stop.is_set():  # asked to stop: a clean close
                break
            self.error = reason
            log.warning("host %s dropped out: %s; its running tasks go back to the queue",
                        self.name, reason)
            self._lost_reason = reason
            self.state = DOWN
            self._teardown(reason)
            self.retry_at = time.monotonic() + delay
            self._owner._host_changed(self)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, _LONGEST_RETRY)
        self._close_remote()
        self.state = CLOSED
        self.first_attempt.set()

    def _bring_up(self) -> None:
        settings = self.settings
        self.generation += 1
        self._lost_reason = None
        self._start_failures = 0
        link = self._open_link()
        run_id = f"{self._run_base}-{self.generation}"
        self.info = remote.probe(link.transport, self.name, settings.python,
                                 settings.remote_dir, run_id, settings.runtime[0],
                                 max(settings.timeout, 30.0))
        self._run_dir = self.info["run"]
        self._runs[self._run_dir] = []
        try:
            sftp = link.client.open_sftp()
            sftp.get_channel().settimeout(max(settings.timeout, 30.0))  # type: ignore[union-attr]
            link.channels += 1
            self._sftp = sftp
            self._runtime_path = remote.ensure_runtime(sftp, self.info["root"], settings.runtime,
                                                       self.info["cached"])
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostError(f"host {self.name}: uploading the worker runtime failed: "
                            f"{type(exc).__name__}: {exc}") from exc
        count = self.wanted or int(self.info["cpus"]) or 1
        started = []
        for _ in range(count):
            if self._stop.is_set():
                raise HostError(f"host {self.name}: closing")
            started.append(self._start_worker())
        for worker in started:
            self._await_hello(worker)
        self._register(started)

    def _open_link(self) -> Link:
        client = open_client(self.target, self.settings.timeout)
        spare = 0 if self.links else 1  # the first keeps a channel free for control commands
        link = Link(client, len(self.links), self.settings.heartbeat_interval, self.name,
                    max(1, self.settings.max_sessions - spare))
        self.links.append(link)
        return link

    def _channel(self) -> tuple[Link, paramiko.Channel]:
        for link in self.links:
            channel = link.open_channel(self.settings.timeout)
            if channel is not None:
                return link, channel
        link = self._open_link()
        channel = link.open_channel(self.settings.timeout)
        if channel is None:
            raise HostError(f"host {self.name}: a new connection could not open a channel "
                            "(the server's MaxSessions is 0?)")
        return link, channel

    def _start_worker(self) -> RemoteWorker:
        self._serial += 1
        scratch = posixpath.join(self._run_dir, f"w{self._serial}")
        try:
            link, channel = self._channel()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostError(f"host {self.name}: opening a channel failed: "
                            f"{type(exc).__name__}: {exc}") from exc
        try:
            channel.exec_command(remote.worker_command(self.settings.python,
                                                       self._runtime_path, scratch))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            channel.close()
            link.release()
            raise HostError(f"host {self.name}: starting a worker failed: "
                            f"{type(exc).__name__}: {exc}") from exc
        worker = RemoteWorker(self, link, self._serial, self.generation, channel,
                              self.settings.prefetch)
        worker.connection.start()
        return worker

    def _await_hello(self, worker: RemoteWorker) -> None:
        connection = worker.connection
        limit = max(self.settings.timeout, 30.0)
        deadline = time.monotonic() + limit
        # Decided on settled() alone: a hello is recorded before the frames held for the
        # worker have left, and a loaded machine's write outlasted a slice of this wait
        # (the start was then taken for a failure, "did not start within 0.25 s").
        while not connection.settled(0.25):
            if time.monotonic() > deadline:
                raise HostError(f"host {self.name}: worker {connection.name} did not start "
                                f"within {limit:g} s")
            if self._stop.is_set():
                raise HostError(f"host {self.name}: closing")
        try:
            hello = connection.wait_ready(0)
        except InterfaceError as exc:
            raise HostError(f"host {self.name}: {exc}") from exc
        worker.pid = hello.get("pid")
        self._runs[self._run_dir].append(worker.pid)  # type: ignore[arg-type]

    def _register(self, workers: list[RemoteWorker]) -> None:
        """Make started workers available; one that died meanwhile is queued for replacing."""
        with self._lock:
            for worker in workers:
                if worker.connection.closed:
                    self._dead.append(worker)
                else:
                    self.workers.append(worker)
        if self._dead:
            self._wake.set()
        self._record_pids()
        for worker in workers:
            if not worker.connection.closed:
                self._owner._worker_up(worker)

    def _record_pids(self) -> None:
        with self._sftp_lock:
            try:
                remote.write_pids(self._sftp, self._run_dir, self._runs[self._run_dir])  # type: ignore[arg-type]
            except (OSError, EOFError, paramiko.SSHException) as exc:
                log.debug("host %s: recording worker pids failed: %s", self.name, exc)

    def _watch(self) -> str | None:
        """Until the host is lost (its reason) or the interface closes (None)."""
        tick = min(1.0, self.settings.heartbeat_interval / 2)
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            if self._stop.is_set():
                return None
            for link in self.links:
                if not link.alive():
                    return self._connection_lost(link)
                silent = link.heartbeat.silent_for()
                if silent > self.settings.heartbeat_timeout:
                    return (f"host {self.name} did not answer a heartbeat for {silent:.1f} s "
                            "(frozen, or the network is down)")
            while self._dead:
                worker = self._dead.popleft()
                if worker.generation != self.generation:
                    continue  # died with an earlier connection, already handled
                if not worker.channel.eof_received:
                    # The channel closed without the worker's end of stream: the connection
                    # is going. paramiko closes channels just before it marks the transport.
                    deadline = time.monotonic() + 1.0
                    while worker.link.alive() and time.monotonic() < deadline:
                        time.sleep(0.02)
                    if not worker.link.alive():
                        return self._connection_lost(worker.link)
                reason = self._replace(worker)
                if reason is not None:
                    return reason

    def _connection_lost(self, link: Link) -> str:
        exc = link.transport.get_exception()
        detail = f": {type(exc).__name__}: {exc}" if exc else " (closed by the other end)"
        return f"the connection to host {self.name} broke{detail}"

    def _replace(self, dead: RemoteWorker) -> str | None:
        """Start a worker in place of one that died alone; a reason if the host is unusable."""
        if dead.connection.hello is None:
            self._start_failures += 1
        else:
            self._start_failures = 0
        last = dead.connection.error or "its stream ended"
        log.warning("host %s: worker %s ended (%s); starting another", self.name, dead.name, last)
        while self._start_failures < _START_FAILURES_ALLOWED:
            if self._stop.is_set():
                return None  # closing: a worker not started is no failure of the host
            try:
                worker = self._start_worker()
                self._await_hello(worker)
            except HostError as exc:
                if self._stop.is_set():
                    return None
                if not all(link.alive() for link in self.links):
                    return str(exc)
                self._start_failures += 1
                last = str(exc)
                continue
            self._register([worker])
            return None
        return (f"host {self.name}: {self._start_failures} workers in a row died as they "
                f"started; last: {last}")

    def _worker_closed(self, worker: RemoteWorker, reason: str) -> None:
        """A worker's stream ended (reader thread); its tasks were already handed back."""
        with self._lock:
            registered = worker in self.workers
            if registered:
                self.workers.remove(worker)
        worker.link.release()
        worker.writer.close()  # ends its sending thread
        if not registered or self._stop.is_set() or worker.generation != self.generation:
            return  # a worker still starting is its starter's business
        self._owner._worker_down(worker, reason)
        self._dead.append(worker)
        self._wake.set()

    def _describe_loss(self, worker: RemoteWorker) -> str:
        if self._lost_reason and worker.generation == self.generation:
            return self._lost_reason
        channel = worker.channel
        if channel.eof_received:
            channel.status_event.wait(1.0)
            status = channel.exit_status
            how = f"exited with status {status}" if status >= 0 else "was killed by a signal"
            text = f"remote worker {worker.name} (pid {worker.pid}) {how}"
        else:
            text = self._connection_lost(worker.link)
        time.sleep(0.01)  # let the stderr drain catch the last lines
        tail = worker.stderr.text()
        if tail:
            text += f"; its last output:\n{tail}"
        return text

    def _teardown(self, reason: str | None = None) -> None:
        """Close every connection: each worker hands its tasks back as its stream ends."""
        with self._lock:
            gone = list(self.workers)
            self.workers.clear()
            self._dead.clear()
        for worker in gone:
            self._owner._worker_down(worker, reason or "host closed")
        for link in self.links:
            link.close()
        self.links = []
        self._sftp = None

    def _close_remote(self) -> None:
        """Stop this host's workers and remove the run's directories, then disconnect."""
        with self._lock:
            workers = list(self.workers)
            self.workers.clear()
        for worker in workers:
            worker.connection.close()  # "bye" after what it holds...
            worker.writer.close()  # ...and EOF: an idle worker exits now
        runs = dict(self._runs)
        # A heartbeat overdue for two intervals (3 s at least): the host is frozen. Less
        # is a busy machine (a loaded master starves paramiko's thread for seconds).
        overdue = max(3.0, 2 * self.settings.heartbeat_interval)
        answering = all(link.heartbeat.silent_for() < overdue for link in self.links)
        if not answering:  # a frozen host would hold close() for the whole timeout
            log.warning("host %s does not answer: its workers exit when the connection "
                        "closes; its run directory is swept by the next run", self.name)
        elif self.links and runs:
            try:
                self._clean(runs)
            except Exception as exc:
                log.warning("host %s: removing the run directory failed: %s", self.name, exc)
        for link in self.links:
            link.close()
        self.links = []
        self._sftp = None

    def _clean(self, runs: dict[str, list[int]]) -> None:
        def clean(transport: paramiko.Transport) -> None:
            for run, pids in runs.items():
                remote.stop_workers(transport, self.settings.python, run, pids,
                                    self.settings.timeout, remove=True)

        self._control(clean)

    def stop_worker(self, worker: RemoteWorker) -> None:
        """Kill one worker's process (a timeout or a cancel); it is replaced like any death."""
        pid, run = worker.pid, worker.run_dir
        if pid is None:
            return

        def stop(transport: paramiko.Transport) -> None:
            remote.stop_workers(transport, self.settings.python, run, [pid],
                                self.settings.timeout, remove=False)

        try:
            self._control(stop)
        except Exception as exc:
            log.warning("host %s: stopping worker %s failed: %s", self.name, worker.name, exc)

    def _control(self, action: Any) -> None:
        """Run ``action(transport)`` on a channel of its own: the first connection's spare
        slot, else any connection with room, else a connection opened for it."""
        with self._control_lock:
            live = [link for link in self.links if link.alive()]
            if not live:
                raise HostError(f"host {self.name}: no connection is up")
            for link in live:
                try:
                    action(link.transport)
                    return
                except paramiko.ChannelException:
                    continue
            spare = open_client(self.target, self.settings.timeout)
            try:
                action(spare.get_transport())
            finally:
                spare.close()
