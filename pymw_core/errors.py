"""Exceptions PyMW raises. Standard library only: the worker runtime imports this too."""

from __future__ import annotations

from typing import Any


class PyMWError(Exception):
    """Base class of every error PyMW itself raises."""

    @property
    def param(self) -> Any:
        """The first argument (the message): PyMW 0.4's name for it, kept for its programs."""
        return self.args[0] if self.args else None


class TaskError(PyMWError):
    """A task could not be submitted, run, or handed out as asked."""


class InvalidValueError(TaskError, ValueError):
    """A setting (``timeout``, ``max_attempts`` ...) has a value it cannot take.

    Both a TaskError (PyMW's word for bad task input) and a ValueError (Python's).
    """


class InterfaceError(PyMWError):
    """An interface could not be found, built, or used."""


class ConfigurationError(InterfaceError):
    """The configuration names no usable interface, or options it does not take or lacks.

    Raised before anything starts; ``pymw config`` and ``pymw check`` exit 2 on it.
    """


class JournalError(InterfaceError):
    """A journal cannot be used: not a journal, another program's, in use, or unwritable.

    Raised at ``Master()`` (nothing ran yet) and by ``pymw journal`` / ``open_reader``.
    """


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
