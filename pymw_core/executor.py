"""A ``concurrent.futures.Executor`` on any PyMW interface.

Code written for ``ProcessPoolExecutor`` runs unchanged::

    with PyMWExecutor("ssh", hosts=["node1", "node2"]) as pool:
        print(list(pool.map(pow, [2, 3], [10, 10])))
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

from pymw_core.master import Master
from pymw_core.task import Task


class TaskFuture(Future):
    """A Future bound to a PyMW task; ``cancel()`` cancels the task (even a running one,
    where the interface can stop it)."""

    def __init__(self, task: Task, settle: Callable[[Task], None]) -> None:
        super().__init__()
        self.task = task
        self.cancelling = False
        self._settle = settle

    def cancel(self) -> bool:
        if self.done():
            return False
        self.cancelling = True  # the task's cancellation must not settle us as failed
        try:
            if not self.task.cancel():
                return False
            return super().cancel()
        finally:
            self.cancelling = False
            if self.task.done() and not self.done():
                self._settle(self.task)


class PyMWExecutor(Executor):
    """Submits each call as a PyMW task. Give an interface name and master options, or
    an existing ``master`` (left open at shutdown)."""

    def __init__(self, interface: Any = None, *, master: Master | None = None,
                 **master_options: Any) -> None:
        self._own_master = master is None
        self.master = master if master is not None else Master(interface, **master_options)
        self._futures: dict[int, TaskFuture] = {}
        self._lock = threading.Lock()
        self._shutdown = False
        self.master.add_observer(self)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        # Keywords travel beside the arguments: the function's pickle is reused, where a
        # partial per call would be pickled (and cached on the worker) anew each time.
        task = self.master._submit(fn, args, (), (), (), None, None, None, kwargs or None)
        future = TaskFuture(task, self._settle)
        with self._lock:
            self._futures[task.id] = future
        if task.done():
            self._settle(task)
        return future

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]:
        """As ``ProcessPoolExecutor.map``: results in order; with ``chunksize`` N each task
        runs N calls, so many short calls cost few tasks."""
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a whole number >= 1, not {chunksize!r}")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        calls = zip(*iterables, strict=False)  # shortest wins, as for the builtin map
        chunks = super().map(_chunk_runner(fn), _chunks(calls, chunksize), timeout=timeout)
        return (result for chunk in chunks for result in chunk)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ``concurrent.futures``: ``cancel_futures`` cancels the calls not yet started
        (running ones finish); ``wait`` waits for them."""
        self._shutdown = True
        if cancel_futures:
            with self._lock:
                pending = list(self._futures.values())
            for future in pending:
                future.cancelling = True
                try:
                    if self.master.cancel(future.task, running=False):
                        Future.cancel(future)
                finally:
                    future.cancelling = False
        if self._own_master:
            self.master.close(wait=wait)
        elif wait:
            with self._lock:
                pending = list(self._futures.values())
            for future in pending:
                try:
                    future.exception()
                except BaseException:
                    pass

    # -- observer hooks: the master tells us when tasks end ----------------------------

    def on_task_done(self, task: Task) -> None:
        self._settle(task)

    def on_task_failed(self, task: Task, error: BaseException) -> None:
        self._settle(task)

    def _settle(self, task: Task) -> None:
        with self._lock:
            future = self._futures.get(task.id)
            if future is None or future.cancelling:
                return
            del self._futures[task.id]
        if future.done():
            return
        try:
            _, result = self.master.get_result(task)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


def _chunks(calls: Iterator[tuple[Any, ...]], size: int) -> Iterator[tuple[tuple[Any, ...], ...]]:
    """The argument tuples of ``calls``, ``size`` at a time (the last chunk may be short)."""
    while chunk := tuple(itertools.islice(calls, size)):
        yield chunk


def _chunk_runner(fn: Callable[..., Any]) -> Callable[[tuple[tuple[Any, ...], ...]], list[Any]]:
    # Nested, so it travels by value: a worker with only the runtime zip can run it.
    def run_chunk(chunk: tuple[tuple[Any, ...], ...]) -> list[Any]:
        return [fn(*args) for args in chunk]

    return run_chunk
