"""Unpacking: turning a worker runtime's ``done`` frame into the attempt's result or exception."""

from __future__ import annotations

import pickle
from typing import Any

from pymw_core import wire
from pymw_core.errors import RemoteTraceback, TaskError
from pymw_core.task import Attempt


def deliver(attempt: Attempt | Any, reply: tuple) -> None:
    """Finish ``attempt`` with the outcome, output and run time that ``reply`` carries.

    Given a Task instead (older interfaces), its current attempt is finished.
    """
    if not isinstance(attempt, Attempt):
        attempt = attempt._attempt
        if attempt is None:
            return
    _, _, ok, blob, stdout, stderr, seconds = reply
    output = {"stdout": stdout, "stderr": stderr, "seconds": seconds}
    if ok:
        try:
            result = wire.loads(blob)
        except Exception as exc:
            error = TaskError(
                f"the result of {attempt.name} could not be unpickled on the master: "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            attempt.task_finished(error, **output)
            return
        attempt.task_finished(None, result, **output)
        return
    try:
        error, tb = pickle.loads(blob)
    except Exception as exc:
        error, tb = (
            TaskError(
                f"{attempt.name} raised an exception that could not be unpickled on the "
                f"master: {type(exc).__name__}: {exc}"
            ),
            "",
        )
    if tb:
        error.__cause__ = RemoteTraceback(tb)
    attempt.task_finished(error, **output)
