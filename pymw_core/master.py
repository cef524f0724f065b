"""The master: what the user calls to submit tasks and collect their results."""

from __future__ import annotations

import atexit
import logging
import math
import numbers
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pymw_core import config, plugins
from pymw_core.deadlines import Deadlines
from pymw_core.errors import InterfaceError, InvalidValueError, MasterClosedError, TaskError
from pymw_core.journal import Journal, program_name, task_key
from pymw_core.lifecycle import Lifecycle
from pymw_core.observers import resolve_observers
from pymw_core.payload import Packer
from pymw_core.resources import merged as merge_resources
from pymw_core.resources import normalize as normalize_resources
from pymw_core.scheduler import Matcher, Scheduler
from pymw_core.task import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING, Task

log = logging.getLogger("pymw")
_open_masters: set[Master] = set()

#: The keys of ``Master.get_status()`` that the master owns. An interface's own key of
#: the same name is never overwritten: it is reported as ``"interface." + key``.
MASTER_STATUS_KEYS = (
    "interface", "interface_status", "submitted", "queued", "running", "finished", "failed",
    "cancelled", "tasks",
)


class Master:
    """Submits tasks to an interface and hands out their results.

    ``interface`` is an installed interface's name, an interface instance, or None
    (``PYMW_INTERFACE``, else the config file, else ``"local"``). Keyword arguments
    other than the master's own settings are the interface's options.

    ``max_in_flight`` bounds the tasks handed to the interface and not yet back
    (default: the interface's ``default_max_in_flight``, else 256). ``resources`` is
    the default of every task's ``resources``.

    ``journal`` (a file path; default the config file's ``journal``) records the run so
    that the same program started again resumes it (docs/journal.md): ``resume`` says
    which recorded ends answer a submission (``"finished"``, the default; ``"all"``
    replays failures too; ``"none"``), ``journal_program`` names the program the journal
    belongs to (default ``sys.argv[0]``).
    """

    _task_type: type[Task] = Task  # what submit_task makes (pymw_core.compat's PyMW_Task)

    def __init__(
        self,
        interface: Any = None,
        *,
        scheduler_func: Matcher | None = None,
        max_attempts: int = 3,
        max_in_flight: int | None = None,
        timeout: float | None = None,
        resources: Mapping[str, Any] | None = None,
        observers: Iterable[Any] = (),
        progress: bool = False,
        loglevel: int | None = None,
        delete_files: bool = True,
        journal: str | os.PathLike | None = None,
        resume: str | None = None,
        journal_program: str | None = None,
        **options: Any,
    ) -> None:
        self._journal: Journal | None = None
        self._journal_wanted = (journal, resume, journal_program)
        try:
            self._setup(interface, scheduler_func, max_attempts, max_in_flight, timeout,
                        resources, observers, progress, loglevel, delete_files, options)
        except BaseException:
            # The interface (built here, or handed over) must not outlive this failure:
            # nobody else will ever close it.
            given = None if interface is None or isinstance(interface, (str, type)) else interface
            _discard(getattr(self, "interface", given))
            if self._journal is not None:
                self._journal.close()
            raise

    def _setup(self, interface: Any, scheduler_func: Matcher | None, max_attempts: int,
               max_in_flight: int | None, timeout: float | None,
               resources: Mapping[str, Any] | None, observers: Iterable[Any],
               progress: bool, loglevel: int | None, delete_files: bool,
               options: dict[str, Any]) -> None:
        _check_count("max_attempts", max_attempts)
        if max_in_flight is not None:
            _check_count("max_in_flight", max_in_flight)
        timeout = _check_timeout(timeout)
        self.resources = normalize_resources(resources, "the master's resources")
        if loglevel is not None:
            log.setLevel(loglevel)
        self.delete_files = delete_files  # PyMW 0.x setting; interfaces read it for their files
        self.max_attempts = max_attempts
        self.timeout = timeout
        watchers = resolve_observers([*observers, *(["progress"] if progress else [])])
        self.interface, self.interface_name = _build_interface(interface, options)
        self._manager = plugins.make_manager(self.interface, tuple(watchers))
        self.hooks = self._manager.hook
        self._observed: set[str] = set()
        self._status_clashes: set[str] = set()  # interface status keys already warned about
        self._refresh_observed()
        worker_finished = plugins.direct_call(self.hooks.worker_finished)
        has_worker_finished = bool(self.hooks.worker_finished.get_hookimpls())
        self._life = Lifecycle(
            observe=self._observe,
            worker_finished=(
                (lambda worker: self._call_quietly(worker_finished, worker=worker))
                if has_worker_finished else None),
            stop=self._stop_attempt,
            can_stop=bool(self.hooks.stop_task.get_hookimpls()),
        )
        self._life.deadlines = Deadlines(self._life.expire)
        self._journal = self._life.journal = _open_journal(
            *self._journal_wanted, self.interface_name, {
                "max_attempts": max_attempts, "max_in_flight": max_in_flight,
                "timeout": timeout, "resources": self.resources, **options})
        if max_in_flight is None:  # the interface may know better (a batch system: thousands)
            hint = getattr(self.interface, "default_max_in_flight", None)
            max_in_flight = hint if isinstance(hint, int) and hint >= 1 else 256
        staging = getattr(self.interface, "staging_dir", None)  # where data file snapshots go
        self._packer = Packer(staging if isinstance(staging, str) and staging else None)
        self._scheduler = Scheduler(self._life, self.hooks, self.interface, scheduler_func,
                                    max_in_flight, self._call_quietly, self._observe)
        self._life.scheduler = self._scheduler
        _open_masters.add(self)
        _install_signal_handlers()
        self._call_quietly(self.hooks.attach_master, master=self)

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> Master:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Master interface={self.interface_name!r} tasks={self._life.submitted}>"

    # -- the seed's API -----------------------------------------------------------------

    def submit_task(
        self,
        executable: Callable[..., Any] | str,
        input_data: Any = None,
        modules: Iterable[Any] = (),
        dep_funcs: Iterable[Callable[..., Any]] = (),
        data_files: Iterable[str] = (),
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> Task:
        """Queue ``executable`` (a callable, or a script's path) to run with ``input_data``.

        ``timeout`` (seconds of running, default the master's), ``max_attempts`` (runs
        allowed when workers are lost) and ``resources`` (cpus, memory, gpus; merged
        over the master's) apply to this task.
        """
        return self._submit(executable, input_data, modules, dep_funcs, data_files,
                            max_attempts, timeout, resources, None)

    def _submit(self, executable: Any, input_data: Any, modules: Iterable[Any],
                dep_funcs: Iterable[Any], data_files: Iterable[str], max_attempts: int | None,
                timeout: float | None, resources: Mapping[str, Any] | None,
                kwargs: dict[str, Any] | None) -> Task:
        self._check_open()
        if max_attempts is not None:
            _check_count("max_attempts", max_attempts)
        # An explicit inf means "no timeout" even where the master has one.
        timeout = self.timeout if timeout is None else _check_timeout(timeout)
        wanted = merge_resources(self.resources, resources) if resources else self.resources
        payload = self._packer.pack(executable, input_data, modules, dep_funcs, data_files,
                                    kwargs)
        journal = self._journal
        if journal is not None:
            key = task_key(payload.code, payload.args, payload.extras)
            recorded = journal.match(key)
            outcome = (journal.outcome(recorded.row)
                       if recorded is not None and journal.reusable(recorded) else None)
            if outcome is not None:
                payload = None  # answered from the journal: nothing runs

        # Built outside the master's lock: only the queueing is done under it.
        task = self._task_type(
            self._life, self._life.new_id(), executable, input_data, payload,
            modules=tuple(modules) if modules else (),
            dep_funcs=tuple(dep_funcs) if dep_funcs else (),
            data_files=tuple(data_files) if data_files else (),
            max_attempts=max_attempts or self.max_attempts,
            timeout=timeout,
            resources=wanted,
        )
        if journal is not None:
            if outcome is not None:
                return self._life.resumed(task, outcome)
            task._journal = journal.entry(task.id, key, _task_name(executable), recorded)
            handle = (journal.last_handle(recorded.row)
                      if recorded is not None and recorded.state in (QUEUED, RUNNING)
                      and self.hooks.reattach_task.get_hookimpls() else None)
            if handle is not None:
                self._life.reattach(task, lambda attempt: self.hooks.reattach_task(
                    task=attempt, handle=handle))
                return task
        match_here = self._life.submit(task)
        if match_here:
            self._scheduler.match_here()
        return task

    def get_result(
        self, task: Task | list[Task] | None = None, blocking: bool = True
    ) -> tuple[Task | None, Any]:
        """A finished task and its result, raising the task's own exception if it failed.

        ``task=None``: any finished task not yet handed out; a list: any of those; a Task:
        that one, every time (also after ``close()``, once it ended). ``blocking=False``
        returns ``(None, None)`` if none is done.
        """
        if task is None:
            chosen = self._life.wait_any(None, blocking)
        elif isinstance(task, Task):
            self._check_own(task)
            chosen = self._life.wait_one(task, blocking)
        elif isinstance(task, (list, tuple, set, frozenset)):
            wanted = task if isinstance(task, list) else list(task)
            if not wanted:
                raise TaskError("get_result was given an empty list of tasks")
            # Each item is checked when the list is first seen: a loop over one long list
            # costs a compare per call, not a scan (see Lifecycle._index).
            chosen = self._life.wait_any(wanted, blocking, check=self._check_own)
        else:
            raise TaskError(
                f"get_result takes a Task, a list of Tasks or None, not {type(task).__name__}"
            )
        if chosen is None:
            return None, None
        self._life.sync_journal((chosen,))  # what is handed out is in the journal
        if chosen._error is not None:
            raise chosen._error
        return chosen, chosen._result

    def get_status(self) -> dict[str, Any]:
        """The interface's status dictionary plus the master's task counters and tasks.

        ``tasks`` lists the tasks not yet handed out (a handed-out task is forgotten).
        If the interface's ``get_status`` raises or returns a non-dict, its part is
        empty and ``interface_status`` is ``"error"``. The master's keys are
        :data:`MASTER_STATUS_KEYS`; an interface key with one of those names appears as
        ``"interface." + key`` (and is logged once), never overwritten.
        """
        status = self._call_quietly(self.hooks.get_status, _failed := [])
        ok = isinstance(status, dict) and not _failed
        status = _namespaced(status, self.interface_name, self._status_clashes) if ok else {}
        if not ok and self.hooks.get_status.get_hookimpls():
            status["interface_status"] = "error"
        life = self._life
        with life.lock:
            status.update(
                interface=self.interface_name,
                submitted=life.submitted,
                queued=life.counts[QUEUED],
                running=life.counts[RUNNING],
                finished=life.counts[FINISHED],
                failed=life.counts[FAILED],
                cancelled=life.counts[CANCELLED],
            )
        status["tasks"] = life.held()
        return status

    def close(self, wait: bool = False) -> None:
        """Stop the interface once; queued and running tasks are abandoned unless ``wait``."""
        if not self._life.close(wait):
            return
        _open_masters.discard(self)
        try:
            self.hooks.cleanup()
        except Exception:
            log.warning("the %s interface's cleanup failed", self.interface_name, exc_info=True)
        self._packer.close()  # after cleanup: a batch job may read its files to the end
        if self._journal is not None:
            self._journal.close()
        self._observe("on_master_closed", master=self)

    @property
    def journal(self) -> str | None:
        """The journal's absolute path (``Master(journal=...)``), or None without one."""
        return self._journal.path if self._journal is not None else None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._life.closed

    # -- beyond the seed ----------------------------------------------------------------

    def cancel(self, task: Task, *, running: bool = True) -> bool:
        """Cancel a task: a queued one always, a running one if the interface can stop it
        (and ``running`` is true; False leaves a running task alone).

        Returns False if the task had already ended or cannot be stopped. A cancelled
        task's ``get_result`` raises :class:`TaskCancelledError`.
        """
        self._check_own(task)
        return self._life.cancel(task, running)

    def add_observer(self, observer: Any) -> None:
        """Register an observer plugin (an object or a registered name) on this master."""
        for plugin in resolve_observers([observer]):
            try:
                self._manager.register(plugin)
            except Exception as exc:
                raise InterfaceError(f"observer {plugin!r} cannot be used: {exc}") from exc
        self._refresh_observed()

    def as_completed(self, tasks: Iterable[Task] | None = None,
                     timeout: float | None = None) -> Iterator[Task]:
        """Yield tasks as they finish (each once), failed ones included: check ``exception()``.

        ``tasks=None`` follows every task not yet handed out when the iteration starts.
        """
        wanted = None if tasks is None else list(tasks)
        for task in wanted or ():
            self._check_own(task)
        self._check_open()
        return iter(self._life.completed(wanted, timeout))

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            **submit_options: Any) -> Iterator[Any]:
        """Like the builtin ``map``, run as tasks; results come in input order.

        Every task is submitted before the first result is awaited. The first failure
        is raised where its result would be; the tasks after it still run. Options such
        as ``timeout`` (each task's own run limit) and ``max_attempts`` apply to each task.
        """
        arguments = zip(*iterables, strict=False)
        tasks = [self.submit_task(fn, args, **submit_options) for args in arguments]

        def results() -> Iterator[Any]:
            for task in tasks:
                yield self.get_result(task)[1]

        return results()

    # -- what interfaces call --------------------------------------------------------------

    def workers_changed(self) -> None:
        """Workers appeared or vanished: match again now instead of at the next poll."""
        self._life.workers_back()

    def worker_up(self, worker: Any) -> None:
        """An interface reports a new worker: observers hear of it, the scheduler wakes."""
        self._observe("on_worker_up", worker=worker)
        self.workers_changed()

    def worker_down(self, worker: Any, reason: str) -> None:
        """An interface reports a worker gone (its tasks go through ``worker_lost``).

        A worker going away never lifts ``workers_exhausted``: only one coming does.
        """
        self._observe("on_worker_lost", worker=worker, reason=reason)
        self._life.rematch()

    def workers_exhausted(self, reason: str) -> None:
        """No worker will ever come: fail what is queued (and later submissions) with ``reason``."""
        self._life.exhaust(reason)

    # -- internals ---------------------------------------------------------------------------

    def _virtual_task(self, name: str) -> Task:
        """A running task that no interface runs: its owner calls ``task_finished`` itself."""
        return self._life.virtual(
            self._task_type(self._life, self._life.new_id(), name, None, None))

    def _stop_attempt(self, attempt: Any) -> None:
        self._call_quietly(self.hooks.stop_task, task=attempt, worker=attempt.worker)

    def _check_open(self) -> None:
        if self._life.closed:
            raise MasterClosedError("this master is closed")

    def _check_own(self, task: Any) -> None:
        if not isinstance(task, Task):
            raise TaskError(f"expected a Task, got {type(task).__name__} {task!r}")
        if task._life is not self._life:
            raise TaskError(f"{task} was not submitted to this master")

    def _refresh_observed(self) -> None:
        self._observed = {
            name for name in self._manager.hook.__dict__
            if name.startswith("on_") and getattr(self.hooks, name).get_hookimpls()
        }

    def _call_quietly(self, hook: Any, _failed: list | None = None, **kwargs: Any) -> Any:
        try:
            return hook(**kwargs)
        except Exception:
            name = getattr(hook, "name", None) or getattr(hook, "__name__", hook)
            log.debug("optional hook %s raised; ignored", name, exc_info=True)
            if _failed is not None:
                _failed.append(name)
            return None

    def _observe(self, name: str, **kwargs: Any) -> None:
        if name in self._observed:
            try:
                getattr(self.hooks, name)(**kwargs)
            except Exception:
                log.warning("observer hook %s raised; ignored", name, exc_info=True)


def _namespaced(status: dict, interface_name: str, warned: set[str]) -> dict[str, Any]:
    """The interface's status with any key the master owns renamed ``interface.<key>``."""
    out = dict(status)
    for key in MASTER_STATUS_KEYS:
        if key in out:
            out[f"interface.{key}"] = out.pop(key)
            if key not in warned:
                warned.add(key)
                log.warning("the %s interface's get_status() has a key %r, which the master "
                            "owns: it is reported as %r", interface_name, key, f"interface.{key}")
    return out


def _open_journal(path: Any, resume: str | None, program: str | None, interface: str,
                  settings: dict[str, Any]) -> Journal | None:
    """The master's journal: the argument, else the config file's ``journal``."""
    data = config.load_config().data if path is None or resume is None or program is None \
        else {}
    path = path if path is not None else data.get("journal")
    if path is None or path == "":
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidValueError(f"journal must be a file path, not {path!r}")
    resume = resume if resume is not None else data.get("resume", "finished")
    program = program if program is not None else data.get("journal_program")
    settings = dict(settings, resume=resume)
    return Journal(path, program=program_name() if program is None else str(program),
                   interface=interface, settings=settings, resume=resume)


def _task_name(executable: Any) -> str:
    """What the journal names a task: the function's qualified name, or the script's path."""
    # str first, then __fspath__: an isinstance against the os.PathLike ABC costs a
    # microsecond, paid per task by a journaled run.
    if isinstance(executable, str) or hasattr(executable, "__fspath__"):
        return os.path.abspath(os.fspath(executable))
    return (getattr(executable, "__qualname__", None)
            or getattr(executable, "__name__", None) or type(executable).__qualname__)


def _check_count(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidValueError(f"{name} must be a whole number of at least 1, not {value!r}")


def _check_timeout(value: Any) -> float | None:
    """``value`` as a timeout: None or ``inf`` (no timeout), or a positive finite number.

    NaN, zero, negatives, bools and non-numbers raise here, in the call that took them,
    never later in the deadline thread.
    """
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not value > 0):  # NaN fails this too
        raise InvalidValueError(
            "timeout must be a positive number of seconds, or None or float('inf') for "
            f"no timeout, not {value!r}"
        )
    if math.isinf(value):
        return None
    return float(value)


def _build_interface(interface: Any, options: dict[str, Any]) -> tuple[Any, str]:
    if interface is None or isinstance(interface, str):
        choice = config.resolve(interface, options)
        return plugins.create_interface(choice.name, choice.options, choice.chosen), choice.name
    if isinstance(interface, type):
        try:
            return interface(**options), interface.__name__
        except TypeError as exc:
            raise InterfaceError(f"cannot build {interface.__name__}: {exc}") from exc
    if options:
        raise InterfaceError(
            f"options {', '.join(sorted(options))} were given beside an interface instance; "
            "pass them to its constructor instead"
        )
    return interface, type(interface).__name__


def _discard(interface: Any) -> None:
    """Run the cleanup of an interface that no master will own."""
    if interface is None:
        return
    cleanup = getattr(interface, "cleanup", None)
    if callable(cleanup):
        try:
            cleanup()
        except Exception:
            log.warning("cleanup of the unused %r failed", interface, exc_info=True)


@atexit.register
def _close_all() -> None:
    """No worker process or batch job outlives the program."""
    for master in list(_open_masters):
        try:
            master.close()
        except Exception:
            log.warning("closing %r at exit failed", master, exc_info=True)


_signals_installed = False
_previous_sigterm: Any = signal.SIG_DFL


def _install_signal_handlers() -> None:
    """On SIGTERM, close every master (no worker or job outlives the program), then do
    what the program had arranged: call its own handler, or exit as the default would.

    A program that ignores SIGTERM keeps ignoring it. Installed once, from the main
    thread, by the first master; a handler the program sets later replaces it.
    """
    global _signals_installed, _previous_sigterm
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    _signals_installed = True
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN or previous is None:
        return
    _previous_sigterm = previous
    signal.signal(signal.SIGTERM, _on_sigterm)
    if previous is not signal.SIG_DFL:
        log.debug("SIGTERM: PyMW closes its masters, then calls %r", previous)


def _on_sigterm(signum: int, frame: Any) -> None:
    previous = _previous_sigterm
    if callable(previous):
        _close_all()
        previous(signum, frame)
        return
    raise SystemExit(128 + signum)  # the default: exit, and atexit closes the masters
