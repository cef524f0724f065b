"""The ``ssh`` interface: persistent workers on remote hosts, reached over SSH with paramiko.

Each host gets the worker runtime uploaded once (cached by hash), then its workers run
on channels of as few connections as the server's channel limit allows. A worker takes
its running task plus ``prefetch`` more queued behind it, so small tasks cost a message
each way, never a command or a login. Hosts come and go on their own threads
(:mod:`pymw_ssh.host`); this class is the hooks the master calls.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from typing import Any

from pymw_core.bundle import runtime_zip
from pymw_core.errors import InterfaceError
from pymw_core.pacing import spread
from pymw_ssh import remote
from pymw_ssh.connect import HostError, JumpPool
from pymw_ssh.host import CLOSED, FAILED, UP, Host, RemoteWorker, Settings
from pymw_ssh.sshconfig import Resolver

log = logging.getLogger("pymw.ssh")


_STOP_GRACE = 5.0  # seconds a remote worker has to act on a cancel before it is killed


class SSHInterface:
    """Runs tasks on ``hosts`` over SSH. See docs/interfaces/ssh.md for every option.

    ``hosts``: ``[user@]host[:port]`` entries or ``~/.ssh/config`` aliases; an entry may
    also be ``{"host": entry, "python": ..., "workers": n}`` (that host's own settings).
    ``workers_per_host``: an int, or ``{host: int}``; default each host's CPU count.
    ``python``: the remote interpreter (a command: ``"python3"``, ``"/opt/py/bin/python -I"``),
    or ``{host: command}`` for some hosts (the others: ``"python3"``).
    Construction connects to every host and raises InterfaceError only when none works.
    """

    blocking_execute = False  # execute_task queues a frame; data file uploads get a thread

    def __init__(
        self,
        hosts: list[str | dict[str, Any]] | str,
        ssh_config: str | os.PathLike | None = None,
        workers_per_host: int | dict[str, int] | None = None,
        python: str | list[str] | dict[str, str | list[str]] = "python3",
        prefetch: int | None = None,
        connect_timeout: float = 10.0,
        known_hosts: str | os.PathLike | list[str] | None = None,
        remote_dir: str = "~/.cache/pymw",
        max_sessions: int = 10,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 20.0,
        reconnect_attempts: int = 8,
    ) -> None:
        specs, own = _host_list(hosts)
        per_host = _workers_option(workers_per_host, specs)
        per_host.update({name: o["workers"] for name, o in own.items() if "workers" in o})
        pythons = _python_option(python, specs)
        pythons.update({name: o["python"] for name, o in own.items() if "python" in o})
        if prefetch is not None:
            _check_int("prefetch", prefetch, 0)
        _check_int("max_sessions", max_sessions, 2)
        _check_int("reconnect_attempts", reconnect_attempts, 0)
        for option, value in (("connect_timeout", connect_timeout),
                              ("heartbeat_interval", heartbeat_interval),
                              ("heartbeat_timeout", heartbeat_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InterfaceError(f"{option} must be a positive number of seconds, "
                                     f"not {value!r}")
        if not isinstance(remote_dir, str) or not remote_dir.strip():
            raise InterfaceError(f"remote_dir must be a directory path, not {remote_dir!r}")
        if isinstance(known_hosts, (str, os.PathLike)):
            known_hosts = [os.fspath(known_hosts)]
        resolver = Resolver(ssh_config, known_hosts)
        self._jumps = resolver.jumps = JumpPool()  # one connection per jump host, shared
        targets = [resolver.resolve(spec) for spec in specs]
        _warn_unhonoured(targets)

        self._lock = threading.Lock()
        self._master: Any = None
        self._closed = False
        self._exhausted = False
        settings = Settings(
            python=pythons[None],
            workers=per_host.get(None),
            prefetch=prefetch,
            timeout=float(connect_timeout),
            remote_dir=remote_dir,
            max_sessions=max_sessions,
            heartbeat_interval=float(heartbeat_interval),
            heartbeat_timeout=float(heartbeat_timeout),
            reconnect_attempts=reconnect_attempts,
            runtime=runtime_zip(),
        )
        self.hosts = [Host(t, replace(settings, python=pythons.get(t.name, settings.python)),
                           self, per_host.get(t.name)) for t in targets]
        for host in self.hosts:
            host.start()
        for host in self.hosts:
            host.first_attempt.wait()
        if not any(host.state == UP for host in self.hosts):
            reasons = "\n".join(f"  {h.name}: {h.error}" for h in self.hosts)
            self.cleanup()
            raise InterfaceError(f"no SSH host could be used:\n{reasons}")
        for host in self.hosts:
            if host.state == FAILED:
                log.warning("not using host %s: %s", host.name, host.error)
            elif host.state != UP:
                log.warning("skipping host %s for now (it is tried again in the background): %s",
                            host.name, host.error)

    # -- hooks ------------------------------------------------------------------------------

    def attach_master(self, master: Any) -> None:
        self._master = master
        with self._lock:
            workers = [w for host in self.hosts for w in host.workers]
        for worker in workers:
            master.worker_up(worker)

    def get_available_workers(self) -> list[RemoteWorker]:
        """Free slots on live workers, least busy first (:func:`pymw_core.pacing.spread`):
        an idle worker before a busy one's prefetch slot, whatever their depths."""
        with self._lock:
            return spread([
                w for host in self.hosts if host.state == UP
                for w in host.workers if not w.connection.closed
            ])

    def reserve_worker(self, worker: RemoteWorker) -> None:
        with self._lock:
            worker.in_flight += 1

    def worker_finished(self, worker: RemoteWorker) -> None:
        now = time.monotonic()
        with self._lock:
            worker.finished(now)
            worker.host.tasks_done += 1

    def execute_task(self, task: Any, worker: RemoteWorker) -> None:
        files = task.payload.data_files
        if not files:
            _send(task, worker, None)
        elif worker.host.has_files(files):
            _send(task, worker, files)
        else:  # an upload may take a while: never on the scheduler's thread
            threading.Thread(target=_send, args=(task, worker, files), daemon=True,
                             name=f"pymw-upload-{worker.name}").start()

    def stop_task(self, task: Any, worker: RemoteWorker) -> None:
        """Ask the remote worker to stop this attempt (dropped if queued there; the worker
        exits and is replaced if it runs it). The cancel names the attempt, so it never
        hits another task. One that is not acted on within ``_STOP_GRACE`` seconds (a
        worker stuck in C code) is followed by a kill of the remote process."""
        if not worker.connection.cancel(task):
            return

        def force() -> None:
            if worker.connection.holds(task):
                worker.connection.stopping()
                worker.host.stop_worker(worker)

        timer = threading.Timer(_STOP_GRACE, force)
        timer.daemon = True
        timer.start()

    def get_status(self) -> dict[str, Any]:
        hosts = {host.name: host.status() for host in self.hosts}
        return {
            "hosts": hosts,
            "workers": sum(row["workers"] for row in hosts.values()),
            "busy": sum(row["busy"] for row in hosts.values()),
            "hosts_up": sum(1 for row in hosts.values() if row["state"] == UP),
        }

    def cleanup(self) -> None:
        """Stop every remote worker (running tasks are abandoned) and remove the run dirs.

        The runtime zip stays in each host's ``remote_dir``, for the next run.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for host in self.hosts:
            host.stop()
        deadline = time.monotonic() + 15.0
        for host in self.hosts:
            host.join(max(0.0, deadline - time.monotonic()))
        self._jumps.close()

    # -- what hosts call --------------------------------------------------------------------

    def _worker_up(self, worker: RemoteWorker) -> None:
        if not self._closed and self._master is not None:
            self._master.worker_up(worker)

    def _worker_down(self, worker: RemoteWorker, reason: str) -> None:
        if not self._closed and self._master is not None:
            self._master.worker_down(worker, reason)

    def _host_changed(self, host: Host) -> None:
        """A host came up, went down or gave up: wake the scheduler, or declare the end."""
        if self._closed or self._master is None:
            return
        if host.state == UP:
            self._exhausted = False
            self._master.workers_changed()
            return
        if all(h.state in (FAILED, CLOSED) for h in self.hosts) and not self._exhausted:
            self._exhausted = True
            reasons = "; ".join(f"{h.name}: {h.error}" for h in self.hosts)
            self._master.workers_exhausted(f"no SSH host is left to run tasks ({reasons})")


def _send(task: Any, worker: RemoteWorker, files: list[tuple[str, str]] | None) -> None:
    """Upload what the task's host lacks, then queue the task on the worker's channel."""
    file_map = None
    if files:
        try:
            paths = worker.host.remote_files(files)
        except HostError as exc:  # the host went away first: not the task's fault
            task.worker_lost(str(exc), started=False)
            return
        except Exception as exc:  # a file that cannot be read or stored: the task's answer
            task.task_finished(exc)
            return
        file_map = lambda name, path: paths[name]  # noqa: E731
    try:
        worker.connection.send(task, file_map=file_map)
    except InterfaceError as exc:  # died between matching and sending
        task.worker_lost(str(exc), started=False)


def _warn_unhonoured(targets: list[Any]) -> None:
    """Name, once per host (and jump host), the config keywords PyMW does not honour."""
    seen = set()
    for target in targets:
        for hop in [*target.hops(), target]:
            if hop.unhonoured and hop.name not in seen:
                seen.add(hop.name)
                role = "jump host" if hop is not target else "host"
                log.warning("%s %s: its ssh_config sets options PyMW does not honour: %s "
                            "(see docs/interfaces/ssh.md, 'Hosts and ~/.ssh/config')",
                            role, hop.name, ", ".join(hop.unhonoured))


_ENTRY_KEYS = ("host", "python", "workers")


def _host_list(hosts: Any) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The host entries, and the settings of those given as ``{"host": ..., ...}``."""
    if isinstance(hosts, str):
        hosts = hosts.replace(",", " ").split()
    if not isinstance(hosts, (list, tuple)) or not hosts:
        raise InterfaceError(
            "the ssh interface needs hosts: a list like ['node1', 'alice@node2:2222'] "
            f"(not {hosts!r})"
        )
    specs: list[str] = []
    own: dict[str, dict[str, Any]] = {}
    for entry in hosts:
        spec, settings = entry, {}
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - set(_ENTRY_KEYS))
            if unknown or "host" not in entry:
                raise InterfaceError(f"a host given as a table needs 'host' and may have "
                                     f"'python' and 'workers' only, not {entry!r}")
            spec, settings = entry["host"], {k: v for k, v in entry.items() if k != "host"}
        if not isinstance(spec, str) or not spec.strip():
            raise InterfaceError(f"hosts holds strings like 'user@host:port' (or tables "
                                 f"with 'host'), not {entry!r}")
        spec = spec.strip()
        if spec in specs:
            raise InterfaceError(f"host {spec!r} is listed twice; use workers_per_host for "
                                 "more workers on one host")
        specs.append(spec)
        if "workers" in settings:
            _check_int(f"the workers of host {spec!r}", settings["workers"], 1)
        if "python" in settings:
            settings["python"] = _python_words(settings["python"], f"the python of host {spec!r}")
        if settings:
            own[spec] = settings
    return specs, own


def _python_words(value: Any, what: str) -> list[str]:
    try:
        return remote.python_words(value)
    except (ValueError, TypeError):
        raise InterfaceError(f"{what} must name an interpreter (a command or a list of "
                             f"words), not {value!r}") from None


def _python_option(value: Any, specs: list[str]) -> dict[str | None, list[str]]:
    """``{None: default, host: words}`` from a command, a list of words, or ``{host: command}``."""
    if isinstance(value, dict):
        unknown = [name for name in value if name not in specs]
        if unknown:
            raise InterfaceError(f"python names hosts not in hosts: {unknown}")
        found: dict[str | None, list[str]] = {None: ["python3"]}
        for name, command in value.items():
            found[name] = _python_words(command, f"python[{name!r}]")
        return found
    return {None: _python_words(value, "python")}


def _workers_option(value: Any, specs: list[str]) -> dict[str | None, int]:
    """``{None: default, host: count}`` from an int, a dict, or None."""
    if value is None:
        return {}
    if isinstance(value, dict):
        unknown = [name for name in value if name not in specs]
        if unknown:
            raise InterfaceError(f"workers_per_host names hosts not in hosts: {unknown}")
        for name, count in value.items():
            _check_int(f"workers_per_host[{name!r}]", count, 1)
        return dict(value)
    _check_int("workers_per_host", value, 1)
    return {None: value}


def _check_int(name: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InterfaceError(f"{name} must be a whole number of at least {least}, not {value!r}")
