"""PyMW 0.x's map-reduce helper, on any master."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pymw_core.errors import TaskError
from pymw_core.master import Master
from pymw_core.task import Task


def _split(data: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """``data`` in ``parts`` contiguous slices whose sizes differ by at most one."""
    size, extra = divmod(len(data), parts)
    slices, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        slices.append(data[start:end])
        start = end
    return slices


def _byte_ranges(files: Sequence[Any], parts: int) -> list[list[list[Any]]]:
    """The files' bytes in ``parts`` runs of nearly equal length, as ``[path, start, end]``
    blocks (a run may span files; a file may span runs)."""
    paths = [os.fspath(f if isinstance(f, (str, os.PathLike)) else f[0]) for f in files]
    try:
        sizes = [os.path.getsize(p) for p in paths]
    except OSError as exc:
        raise TaskError(f"file_input: cannot read the size of an input file: {exc}") from exc
    quotas = [len(s) for s in _split(range(sum(sizes)), parts)]
    runs: list[list[list[Any]]] = [[] for _ in range(parts)]
    run, room = 0, quotas[0]
    for path, size in zip(paths, sizes, strict=True):
        pos = 0
        while pos < size:
            while room == 0 and run < parts - 1:
                run += 1
                room = quotas[run]
            take = min(room, size - pos) if run < parts - 1 else size - pos
            runs[run].append([path, pos, pos + take])
            pos += take
            room -= take
    return runs


class PyMW_MapReduce:
    """PyMW 0.x's map-reduce helper over a master's tasks.

    ``submit_task_mapreduce`` splits ``input_data`` into ``num_worker`` slices, runs
    ``exec_map(slice)`` on each, then ``exec_reduce`` on each map result (or, with
    ``red_worker=k``, on ``k`` slices of the concatenated map results). The returned
    task finishes with the list of reduce results.

    ``file_input=True``: ``input_data`` lists files (each a path, or a sequence whose
    first item is the path); their bytes are cut into ``num_worker`` nearly equal
    ranges, and each map task gets its range as ``[[path, start, end], ...]`` blocks
    to read itself (PyMW 0.4's meaning).
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
        if not isinstance(num_worker, int) or num_worker < 1:
            raise TaskError(f"num_worker must be a whole number of at least 1, not {num_worker!r}")
        master = self._master
        options: dict[str, Any] = {"modules": modules, "dep_funcs": dep_funcs}
        parts = (_byte_ranges(input_data, num_worker) if file_input
                 else _split(list(input_data or ()), num_worker))

        whole = master._virtual_task(f"mapreduce:{getattr(exec_map, '__name__', 'map')}")
        maps = [master.submit_task(exec_map, (part,), **options) for part in parts]

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
