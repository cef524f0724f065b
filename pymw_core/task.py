"""A task: what the user submitted, where it ran, and how it ended."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymw_core.master import Master
    from pymw_core.payload import Payload

QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"
DONE_STATES = frozenset((FINISHED, FAILED, CANCELLED))


class Task:
    """One unit of work. Interfaces call :meth:`task_finished` or :meth:`worker_lost` on it.

    ``executable`` and ``input_data`` are what was submitted; ``payload`` is its packed
    form for the worker runtime; ``stdout``/``stderr`` hold the worker's captured output.
    """

    __slots__ = (
        "__weakref__",
        "_claimed",
        "_error",
        "_live",
        "_master",
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
        "state",
        "stderr",
        "stdout",
        "submit_time",
        "timeout",
        "worker",
    )

    # PyMW 0.x state names, kept for programs that compare against them.
    TASK_SUBMITTED = QUEUED
    TASK_RUNNING = RUNNING
    TASK_FINISHED = FINISHED
    TASK_ERROR = FAILED

    def __init__(
        self,
        master: Master,
        task_id: int,
        executable: Any,
        input_data: Any,
        payload: Payload,
        *,
        modules: tuple = (),
        dep_funcs: tuple = (),
        data_files: tuple = (),
        max_attempts: int = 3,
        timeout: float | None = None,
    ) -> None:
        self._master = master
        self.id = task_id
        self.executable = executable
        self.input_data = input_data
        self.modules = modules
        self.dep_funcs = dep_funcs
        self.data_files = data_files
        self.payload = payload
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.state = QUEUED
        self.worker: Any = None
        self.attempts = 0
        self.stdout = ""
        self.stderr = ""
        self._result: Any = None
        self._error: BaseException | None = None
        self._claimed = False
        self._live = False  # handed to the interface and not yet reported back
        self.submit_time = time.time()
        self.execute_time = 0.0
        self.finish_time = 0.0
        self._worker_seconds: float | None = None
        self._name: str | None = None

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

    # -- what interfaces call --------------------------------------------------

    def task_finished(self, task_err: BaseException | None = None, result: Any = None) -> None:
        """The task ended: with ``task_err`` if it failed, else with ``result``."""
        self._master._task_ended(self, task_err, result)

    def worker_lost(self, reason: str | BaseException | None = None, started: bool = True) -> None:
        """The worker vanished with this task; the master retries it up to ``max_attempts``.

        ``started=False`` says the task never began there (it was only queued on that
        worker), so the attempt does not count.
        """
        self._master._task_lost(self, str(reason) if reason else "worker lost", started)

    # -- what users read -----------------------------------------------------------

    def done(self) -> bool:
        """True once the task finished, failed or was cancelled."""
        return self.state in DONE_STATES

    def cancel(self) -> bool:
        """Cancel the task (stopping its worker if it runs); False if it had already ended."""
        return self._master.cancel(self)

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
        """0.0 until the task ends, 1.0 after (PyMW 0.x compatibility)."""
        return 1.0 if self.done() else 0.0
