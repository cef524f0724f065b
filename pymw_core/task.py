"""A task (what the user submitted and how it ended) and an attempt (one run of it).

Both are records: every change of their state goes through :mod:`pymw_core.lifecycle`,
which owns the rules. Interfaces hold attempts; users hold tasks.
"""

from __future__ import annotations

import time
import weakref
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymw_core.lifecycle import Lifecycle
    from pymw_core.payload import Payload

QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"
DONE_STATES = frozenset((FINISHED, FAILED, CANCELLED))


class Task:
    """One unit of work, as the user submitted it.

    ``executable`` and ``input_data`` are what was submitted; ``stdout``/``stderr`` hold
    the worker's captured output once the task ended; ``attempts`` counts the runs that
    started on a worker.
    """

    __slots__ = (
        "__weakref__",
        "_attempt",
        "_claimed",
        "_error",
        "_journal",
        "_life",
        "_name",
        "_result",
        "_worker_seconds",
        "attempts",
        "data_files",
        "dep_funcs",
        "executable",
        "execute_time",
        "finish_time",
        "id",
        "input_data",
        "max_attempts",
        "modules",
        "payload",
        "resources",
        "state",
        "stderr",
        "stdout",
        "submit_time",
        "timeout",
        "worker",
    )

    # Constants for comparing with ``state`` (PyMW 0.4's own names, "submitted" and
    # "error", are ``PyMW_Task``'s in pymw_core.compat).
    TASK_SUBMITTED = QUEUED
    TASK_RUNNING = RUNNING
    TASK_FINISHED = FINISHED
    TASK_ERROR = FAILED

    def __init__(
        self,
        life: Lifecycle,
        task_id: int,
        executable: Any,
        input_data: Any,
        payload: Payload | None,
        *,
        modules: tuple = (),
        dep_funcs: tuple = (),
        data_files: tuple = (),
        max_attempts: int = 3,
        timeout: float | None = None,
        resources: dict[str, int] | None = None,
    ) -> None:
        self._life = life
        self.id = task_id
        self.executable = executable
        self.input_data = input_data
        self.modules = modules
        self.dep_funcs = dep_funcs
        self.data_files = data_files
        self.payload = payload
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.resources = resources or {}
        self.state = QUEUED
        self.worker: Any = None
        self.attempts = 0
        self.stdout = ""
        self.stderr = ""
        self._attempt: Attempt | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        self._claimed = False
        self.submit_time = time.time()
        self.execute_time = 0.0
        self.finish_time = 0.0
        self._worker_seconds: float | None = None
        self._name: str | None = None
        self._journal: Any = None  # its journal entry (pymw_core.journal.Entry), if any

    @property
    def name(self) -> str:
        """``<function or script name>#<id>``, for messages and logs."""
        if self._name is None:
            base = getattr(self.executable, "__name__", None) or str(self.executable)
            self._name = f"{base.rsplit('/', 1)[-1]}#{self.id}"
        return self._name

    def __repr__(self) -> str:
        return f"<Task {self.name} {self.state}>"

    def __str__(self) -> str:
        return self.name

    # -- what interfaces that keep the Task call (prefer the attempt's own methods) ----

    def task_finished(self, task_err: BaseException | None = None, result: Any = None) -> None:
        """The task's current attempt ended: with ``task_err`` if it failed, else ``result``."""
        attempt = self._attempt
        if attempt is not None:
            attempt.task_finished(task_err, result)
        else:
            self._life.finish_unattempted(self, task_err, result)

    def record_handle(self, data: dict) -> None:
        """Attempt.record_handle for the task's current attempt."""
        attempt = self._attempt
        if attempt is not None:
            attempt.record_handle(data)

    def worker_lost(self, reason: str | BaseException | None = None, started: bool = True) -> None:
        """The worker running the task's current attempt vanished (see Attempt.worker_lost)."""
        attempt = self._attempt
        if attempt is not None:
            attempt.worker_lost(reason, started)

    # -- what users read -----------------------------------------------------------

    @property
    def attempt(self) -> Attempt | None:
        """The task's latest attempt (its current one while it runs); None before any."""
        return self._attempt

    def done(self) -> bool:
        """True once the task finished, failed or was cancelled."""
        return self.state in DONE_STATES

    def cancel(self) -> bool:
        """Cancel the task (stopping its worker if it runs); False if it had already ended."""
        return self._life.cancel(self)

    def exception(self) -> BaseException | None:
        """The task's exception once it ended with one, else None."""
        return self._error

    def get_total_time(self) -> float | None:
        """Seconds from submission to completion; None until the task ends."""
        if not self.done():
            return None
        return self.finish_time - self.submit_time

    def get_execution_time(self) -> float | None:
        """Seconds the task ran (measured by the worker where it can); None until it ends."""
        if not self.done():
            return None
        if self._worker_seconds is not None:
            return self._worker_seconds
        return self.finish_time - (self.execute_time or self.submit_time)

    def get_progress(self) -> float:
        """1.0 once finished; while it runs, what the task last reported with
        ``pymw_set_progress(ratio)`` on the worker; else 0.0 (as in PyMW 0.4)."""
        if self.state == FINISHED:
            return 1.0
        attempt = self._attempt
        if self.state == RUNNING and attempt is not None:
            return attempt.progress
        return 0.0

    # PyMW 0.4's only names for the captured output, read-only.
    _stdout = property(lambda self: self.stdout, doc="``stdout``, by PyMW 0.4's name.")
    _stderr = property(lambda self: self.stderr, doc="``stderr``, by PyMW 0.4's name.")


class Attempt:
    """One run of a task on one worker: what an interface is given and reports on.

    ``id`` is unique in the master and is what wire messages carry, so a late report
    from an earlier attempt, or a stop meant for it, can never touch a newer one. The
    task's description (``payload``, ``name``, ``timeout``, ``data_files`` ...) reads
    through; ``payload`` is released once the attempt was reported.
    """

    __slots__ = ("_life", "_task", "host", "id", "number", "payload", "progress", "reported",
                 "started_at", "worker", "worker_name")

    def __init__(self, life: Lifecycle, attempt_id: int, task: Task, worker: Any,
                 number: int) -> None:
        self._life = life
        self.id = attempt_id
        # Weak: the task holds its attempt, not the other way round, so a task the
        # user dropped goes at once (no cycle left for the garbage collector), and a
        # report that comes after that finds nothing to change.
        self._task = weakref.ref(task)
        self.worker = worker
        self.number = number  # 1 for the task's first attempt, 2 for the next one ...
        self.payload = task.payload
        self.started_at = 0.0  # when it began to run on the worker (0.0: not yet known)
        self.reported = False  # the interface reported it (finished or lost)
        self.progress = 0.0  # what the run last reported with pymw_set_progress
        # Where it ran, when the interface said so (ran_on: a batch job's node); else
        # the worker's own description, asked only when an error needs it (see where).
        self.host: str | None = None
        self.worker_name: str | None = None

    @property
    def task(self) -> Task:
        """The task this attempt runs (a stand-in once the task is gone: see __init__)."""
        return self._task() or _GONE  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<Attempt {self.number} of {self.task.name} id={self.id}>"

    # Read-through views of the task, for interfaces written against the Task.
    name = property(lambda self: self.task.name)
    executable = property(lambda self: self.task.executable)
    input_data = property(lambda self: self.task.input_data)
    data_files = property(lambda self: self.task.data_files)
    modules = property(lambda self: self.task.modules)
    timeout = property(lambda self: self.task.timeout)
    resources = property(lambda self: self.task.resources)
    max_attempts = property(lambda self: self.task.max_attempts)

    @property
    def current(self) -> bool:
        """True while this is the task's live attempt (not ended by a stop or a report)."""
        return self.task._attempt is self and not self.reported

    def task_finished(self, task_err: BaseException | None = None, result: Any = None, *,
                      stdout: str | None = None, stderr: str | None = None,
                      seconds: float | None = None) -> None:
        """The run ended: with ``task_err`` if the task failed, else with ``result``.

        ``stdout``/``stderr``/``seconds`` are the worker's captured output and run time.
        A report on an attempt that is no longer current only frees its worker.
        """
        self._life.attempt_finished(self, task_err, result, stdout, stderr, seconds)

    def worker_lost(self, reason: str | BaseException | None = None, started: bool = True) -> None:
        """The worker vanished with this attempt; the task is retried up to ``max_attempts``.

        ``started=False`` says the run never began there (it was only queued on that
        worker), so it is not charged to the task.
        """
        self._life.attempt_lost(self, str(reason) if reason else "worker lost", started)

    def record_handle(self, data: dict) -> None:
        """Record in the master's journal (if it has one) what this interface needs to
        re-attach to this run after the master died: a JSON object of its own (a batch
        job's id, its run directory ...). See ``reattach_task`` in pymw_core.hookspecs."""
        self._life.record_handle(self, data)

    def ran_on(self, host: str | None = None, worker: str | None = None) -> None:
        """The interface learnt where this run is (a batch job's execute node, its job
        id): error messages about the attempt name it."""
        if host:
            self.host = str(host)
        if worker:
            self.worker_name = str(worker)

    @property
    def where(self) -> str:
        """``on host node1, worker node1/w2, attempt 2 of 3``: what a task error names."""
        host, name = describe_worker(self.worker)
        host, name = self.host or host, self.worker_name or name
        parts = []
        if host:
            parts.append(f"on host {host}")
        if name:
            parts.append(f"worker {name}" if parts else f"on worker {name}")
        attempt = f"attempt {self.number} of {self.task.max_attempts}"
        parts.append(attempt if parts else f"in {attempt}")
        return ", ".join(parts)

    def set_progress(self, ratio: float) -> None:
        """The worker says how far this run got (0.0 to 1.0, clamped); a report, not a
        state change, so it needs no lock. ``Task.get_progress`` reads it."""
        try:
            value = float(ratio)
        except (TypeError, ValueError):
            return
        if value == value:  # not NaN
            self.progress = min(1.0, max(0.0, value))

    def started(self, when: float | None = None) -> None:
        """The run began on the worker now (or at ``when``): its timeout counts from here."""
        self.started_at = when or time.time()
        if self.task._attempt is self:
            self.task.execute_time = self.started_at


def describe_worker(worker: Any) -> tuple[str | None, str | None]:
    """``(host, name)`` of an interface's worker object, for error messages.

    A worker describes itself with ``str(worker)`` (its name, unique in its interface)
    and an optional ``host_name`` attribute (the machine it runs on). A worker whose
    class keeps object's own ``__str__``/``__repr__`` is named by its class; None (an
    interface without workers) names nothing.
    """
    if worker is None:
        return None, None
    host = getattr(worker, "host_name", None)
    kind = type(worker)
    if kind.__str__ is object.__str__ and kind.__repr__ is object.__repr__:
        name = kind.__name__
    else:
        try:
            name = str(worker)
        except Exception:
            name = kind.__name__
    return (str(host) if host else None), name


# What an attempt reads through once its task was dropped by everyone: nothing runs it.
_GONE = SimpleNamespace(
    _attempt=None, name="(a task no longer held)", executable=None, input_data=None,
    data_files=(), modules=(), timeout=None, resources={}, max_attempts=1, state=FAILED,
    payload=None,
)
