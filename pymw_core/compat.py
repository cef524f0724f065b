"""PyMW 0.x names, so old programs port by changing one import."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from pymw_core.errors import InterfaceError, TaskError
from pymw_core.master import Master
from pymw_core.task import Task

PyMW_Master = Master
PyMW_Task = Task
TaskException = TaskError
InterfaceException = InterfaceError


def _split(data: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """``data`` in ``parts`` contiguous slices whose sizes differ by at most one."""
    size, extra = divmod(len(data), parts)
    slices, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        slices.append(data[start:end])
        start = end
    return slices


class PyMW_MapReduce:
    """PyMW 0.x's map-reduce helper over a master's tasks.

    ``submit_task_mapreduce`` splits ``input_data`` into ``num_worker`` slices, runs
    ``exec_map(slice)`` on each, then ``exec_reduce`` on each map result (or, with
    ``red_worker=k``, on ``k`` slices of the concatenated map results). The returned
    task finishes with the list of reduce results.
    """

    def __init__(self, master: Master) -> None:
        self._master = master

    def submit_task_mapreduce(
        self,
        exec_map: Callable[..., Any],
        exec_reduce: Callable[..., Any],
        num_worker: int = 1,
        input_data: Sequence[Any] = (),
        modules: Sequence[Any] = (),
        dep_funcs: Sequence[Callable[..., Any]] = (),
        red_worker: int = -1,
        file_input: bool = False,
    ) -> Task:
        if file_input:
            raise TaskError("file_input is not supported: pass the data, or data_files to tasks")
        if num_worker < 1:
            raise TaskError(f"num_worker must be at least 1, not {num_worker}")
        master = self._master
        options: dict[str, Any] = {"modules": modules, "dep_funcs": dep_funcs}

        whole = master._virtual_task(f"mapreduce:{getattr(exec_map, '__name__', 'map')}")
        maps = [master.submit_task(exec_map, (part,), **options)
                for part in _split(list(input_data), num_worker)]

        def drive() -> None:
            try:
                if red_worker == -1:
                    reduces = [
                        master.submit_task(exec_reduce, (master.get_result(task)[1],), **options)
                        for task in maps
                    ]
                else:
                    merged: list = []
                    for task in maps:
                        merged += master.get_result(task)[1]
                    reduces = [master.submit_task(exec_reduce, (part,), **options)
                               for part in _split(merged, red_worker)]
                results = [master.get_result(task)[1] for task in reduces]
            except BaseException as exc:  # the umbrella task carries the first failure
                whole.task_finished(exc)
                return
            whole.task_finished(None, results)

        threading.Thread(target=drive, name="pymw-mapreduce", daemon=True).start()
        return whole
