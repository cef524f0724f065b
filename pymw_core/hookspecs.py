"""The whole extension surface: what an interface or an observer may implement.

An interface is a plain class; its methods named like the hooks below are its
implementations (``@hookimpl`` is accepted, never required). Arguments are passed by
name, so implementations must use these parameter names (they may take fewer).
Only ``execute_task`` is required; the master's fallback for every other hook is in
the table of docs/writing-an-interface.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pymw_core.master import Master
    from pymw_core.task import Task

PROJECT = "pymw"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- the interface contract (names from the PyMW manual, section 5.2) -------------------


@hookspec(firstresult=True)
def execute_task(task: Task, worker: Any) -> None:
    """Run ``task`` on ``worker``; call ``task.task_finished()`` or ``task.worker_lost()`` after.

    May block until the task is done or return at once. Raising marks the task erroneous.
    """


@hookspec(firstresult=True)
def get_available_workers() -> list | None:
    """Workers free to take a task now; without it, ``None`` is the worker of every task."""


@hookspec(firstresult=True)
def reserve_worker(worker: Any) -> None:
    """``worker`` was matched with a task and is about to get it."""


@hookspec(firstresult=True)
def worker_finished(worker: Any) -> None:
    """``worker`` finished its task and may take another."""


@hookspec(firstresult=True)
def get_status() -> dict | None:
    """Interface-specific status, merged into ``Master.get_status()``."""


@hookspec(firstresult=True)
def cleanup() -> None:
    """The master is closing: stop workers, remove jobs and temporary files."""


@hookspec(firstresult=True)
def stop_task(task: Task, worker: Any) -> None:
    """Stop ``task``, running on ``worker``, for a timeout or a cancel (replace the worker).

    The master has already recorded the task's end; whatever the worker reports later
    is ignored. Without this hook a cancelled or timed-out task runs on to its end.
    """


@hookspec(firstresult=True)
def attach_master(master: Master) -> None:
    """Called once with the adopting master, so the interface can wake its scheduler.

    Keep ``master`` to call ``master.workers_changed()`` when workers appear or vanish and
    ``master.workers_exhausted(reason)`` when no worker will ever come.
    """


@hookspec(firstresult=True)
def reattach_task(task: Task, handle: dict) -> bool | None:
    """Take over ``task`` (an attempt), which a dead master of this journal started here.

    Called at ``submit_task`` when the journal (``Master(journal=...)``) holds the same
    task unfinished with a ``handle``: the JSON object this interface recorded with
    ``task.record_handle(data)`` while the earlier master ran it (a batch job's id, its
    run directory ...). Return True if the interface found that run still going (or
    already ended with a reply) and will report on ``task`` as on any other attempt
    (``task_finished`` / ``worker_lost``); False (or None) and the task is queued and
    runs as usual. Only interfaces whose work outlives the master implement it.
    """


# -- observers: any plugin may watch tasks without touching the core ------------------


@hookspec
def on_task_submitted(task: Task) -> None:
    """A task entered the queue."""


@hookspec
def on_task_started(task: Task, worker: Any) -> None:
    """A task was handed to the interface (again, after a retry)."""


@hookspec
def on_task_done(task: Task) -> None:
    """A task finished with a result."""


@hookspec
def on_task_failed(task: Task, error: BaseException) -> None:
    """A task ended with an exception (its own, a lost worker, a timeout, a cancel)."""


@hookspec
def on_task_retried(task: Task, reason: str) -> None:
    """A task's worker was lost and the task went back to the queue."""


@hookspec
def on_worker_up(worker: Any) -> None:
    """An interface reported a new worker."""


@hookspec
def on_worker_lost(worker: Any, reason: str) -> None:
    """An interface reported a worker gone."""


@hookspec
def on_master_closed(master: Master) -> None:
    """The master closed; observers flush and release what they hold."""


INTERFACE_HOOKS = (
    "execute_task",
    "get_available_workers",
    "reserve_worker",
    "worker_finished",
    "get_status",
    "cleanup",
    "stop_task",
    "attach_master",
    "reattach_task",
)
OBSERVER_HOOKS = (
    "on_task_submitted",
    "on_task_started",
    "on_task_done",
    "on_task_failed",
    "on_task_retried",
    "on_worker_up",
    "on_worker_lost",
    "on_master_closed",
)
