"""Exceptions PyMW raises. Standard library only: the worker runtime imports this too."""

from __future__ import annotations


class PyMWError(Exception):
    """Base class of every error PyMW itself raises."""


class TaskError(PyMWError):
    """A task could not be submitted, run, or handed out as asked."""


class InterfaceError(PyMWError):
    """An interface could not be found, built, or used."""


class WorkerLostError(TaskError):
    """The task's worker vanished (process killed, host gone, job removed) too many times."""


class TaskTimeoutError(TaskError):
    """The task ran longer than its timeout; its worker was stopped."""


class TaskCancelledError(TaskError):
    """The task was cancelled before it finished."""


class MasterClosedError(TaskError):
    """The master was closed: the task will never run or its result is gone."""


class RemoteTraceback(Exception):
    """Carries the worker's traceback text; chained as ``__cause__`` of a task's exception."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'
