"""PyMW 0.4's master and task: the native ones, with 0.4's behaviour where they differ.

Only programs that reach these names through :mod:`pymw_core.compat` get it; the
native :class:`~pymw_core.master.Master` keeps failing fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from pymw_core.errors import TaskError
from pymw_core.master import Master
from pymw_core.task import CANCELLED, FAILED, QUEUED, Task

# The native states by PyMW 0.4's names for them.
_STATE_NAMES = {QUEUED: "submitted", FAILED: "error", CANCELLED: "error"}


class PyMW_Task(Task):
    """A task, with PyMW 0.4's state names and its private attributes' names, read-only."""

    __slots__ = ()

    TASK_SUBMITTED = "submitted"
    TASK_RUNNING = "running"
    TASK_ERROR = "error"
    TASK_FINISHED = "finished"

    @property
    def _task_state(self) -> str:
        """The state by 0.4's names: submitted, running, finished or error."""
        return _STATE_NAMES.get(self.state, self.state)

    @property
    def _task_name(self) -> str:
        return self.name

    @property
    def _output_data(self) -> Any:
        return self._result

    @property
    def _times(self) -> dict[str, float]:
        return {"submit_time": self.submit_time, "execute_time": self.execute_time,
                "finish_time": self.finish_time}


class PyMW_Master(Master):
    """PyMW 0.4's ``PyMW_Master``: a :class:`Master` that takes 0.4's arguments in 0.4's
    order and keeps 0.4's behaviour where the native one differs.

    - A script path that cannot be run fails its task at ``get_result``, not at submit.
    - ``get_result()`` and ``get_result([])`` both mean "any task".
    - ``get_progress(task_or_list)`` and ``submit_task(..., input_from_file=...)`` exist.
    - Its tasks are :class:`PyMW_Task`.

    ``interface`` is an interface object (``interfaces.generic.GenericInterface()`` ...),
    a PyMW 0.5 interface name, or None (the configured interface, else ``local``).
    Native settings (``max_attempts``, ``timeout`` ...) and interface options may follow
    as keywords.
    """

    _task_type = PyMW_Task

    def __init__(self, interface: Any = None, loglevel: int | None = None,
                 delete_files: bool = True,
                 scheduler_func: Callable[[list, list], tuple[Any, Any]] | None = None,
                 **settings: Any) -> None:
        super().__init__(interface, loglevel=loglevel, delete_files=delete_files,
                         scheduler_func=scheduler_func, **settings)

    def submit_task(  # type: ignore[override]
        self,
        executable: Callable[..., Any] | str,
        input_data: Any = None,
        modules: Iterable[Any] = (),
        dep_funcs: Iterable[Callable[..., Any]] = (),
        data_files: Iterable[str] = (),
        input_from_file: bool = False,
        **native: Any,
    ) -> Task:
        """0.4's ``submit_task``. A script that cannot be read or parsed fails its task,
        raised by ``get_result`` (0.4 found out only when the worker ran it); any other
        mistake (an executable that is neither a callable nor a path, unpicklable
        input ...) raises here, as in 0.4.

        ``input_from_file`` is accepted and changes nothing: under 0.4's generic
        interface it did not either (the function reads the files it is given).
        """
        if not isinstance(input_from_file, bool):
            raise TaskError(f"input_from_file must be True or False, not {input_from_file!r}")
        try:
            return super().submit_task(executable, input_data, modules, dep_funcs, data_files,
                                       **native)
        except TaskError as exc:
            if not _script_fault(executable, exc):
                raise
            failed = self._virtual_task(os.fspath(executable))  # type: ignore[arg-type]
            failed.task_finished(exc)
            return failed

    def get_result(self, task: Task | list[Task] | None = None,
                   blocking: bool = True) -> tuple[Task | None, Any]:
        """0.4's ``get_result``: as the native one, but an empty list means any task."""
        if isinstance(task, list) and not task:
            task = None
        return super().get_result(task, blocking)

    def get_progress(self, task: Task | list[Task] | None) -> list[float]:
        """Each task's progress (see :meth:`Task.get_progress`), as a list, in order.

        ``task`` is a task or a list of them; None gives ``[]``. Raises TaskError if no
        task was ever submitted, or for anything that is not a task of this master.
        """
        if self._life.submitted == 0:
            raise TaskError("no tasks have been submitted")
        wanted = [] if not task else task if isinstance(task, list) else [task]
        for item in wanted:
            self._check_own(item)
        return [item.get_progress() for item in wanted]


def _script_fault(executable: Any, exc: TaskError) -> bool:
    """Whether ``exc`` says the script ``executable`` names cannot be read or parsed."""
    if not isinstance(executable, (str, os.PathLike)):
        return False
    return (not os.path.isfile(os.fspath(executable))
            or isinstance(exc.__cause__, (OSError, SyntaxError, UnicodeDecodeError)))
