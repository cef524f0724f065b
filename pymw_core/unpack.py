"""Unpacking: turning a worker runtime's ``done`` frame into the task's result or exception."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING

from pymw_core.errors import RemoteTraceback, TaskError

if TYPE_CHECKING:
    from pymw_core.task import Task


def deliver(task: Task, reply: tuple) -> None:
    """Record stdout/stderr and timing from ``reply``, then finish ``task`` with its outcome."""
    _, _, ok, blob, stdout, stderr, seconds = reply
    task.stdout = stdout
    task.stderr = stderr
    task._worker_seconds = seconds
    if ok:
        try:
            result = pickle.loads(blob)
        except Exception as exc:
            error = TaskError(
                f"the result of {task} could not be unpickled on the master: "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            task.task_finished(error)
            return
        task.task_finished(None, result)
        return
    try:
        error, tb = pickle.loads(blob)
    except Exception as exc:
        error, tb = (
            TaskError(
                f"{task} raised an exception that could not be unpickled on the master: "
                f"{type(exc).__name__}: {exc}"
            ),
            "",
        )
    if tb:
        error.__cause__ = RemoteTraceback(tb)
    task.task_finished(error)
