"""The master: what the user calls to submit tasks and collect their results."""

from __future__ import annotations

import atexit
import collections
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pymw_core import config, plugins
from pymw_core.deadlines import Deadlines
from pymw_core.errors import (
    InterfaceError,
    MasterClosedError,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
    WorkerLostError,
)
from pymw_core.observers import resolve_observers
from pymw_core.payload import Packer
from pymw_core.scheduler import Matcher, Scheduler
from pymw_core.task import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING, Task

log = logging.getLogger("pymw")
_open_masters: set[Master] = set()


class Master:
    """Submits tasks to an interface and hands out their results.

    ``interface`` is an installed interface's name, an interface instance, or None
    (``PYMW_INTERFACE``, else the config file, else ``"local"``). Keyword arguments
    other than the master's own settings are the interface's options.

    ``max_in_flight`` bounds the tasks handed to the interface and not yet back
    (default: the interface's ``default_max_in_flight``, else 256).
    """

    def __init__(
        self,
        interface: Any = None,
        *,
        scheduler_func: Matcher | None = None,
        max_attempts: int = 3,
        max_in_flight: int | None = None,
        timeout: float | None = None,
        observers: Iterable[Any] = (),
        progress: bool = False,
        loglevel: int | None = None,
        delete_files: bool = True,
        **options: Any,
    ) -> None:
        _check_count("max_attempts", max_attempts)
        if max_in_flight is not None:
            _check_count("max_in_flight", max_in_flight)
        _check_timeout(timeout)
        if loglevel is not None:
            log.setLevel(loglevel)
        self.delete_files = delete_files  # PyMW 0.x setting; interfaces read it for their files
        self.max_attempts = max_attempts
        self.timeout = timeout
        watchers = resolve_observers([*observers, *(["progress"] if progress else [])])
        self.interface, self.interface_name = _build_interface(interface, options)
        self._manager = plugins.make_manager(self.interface, tuple(watchers))
        self.hooks = self._manager.hook
        self._observed: set[str] = set()
        self._refresh_observed()
        self._has_stop_hook = bool(self.hooks.stop_task.get_hookimpls())
        self._worker_finished = plugins.direct_call(self.hooks.worker_finished)
        self._lock = threading.Lock()
        self._results = threading.Condition(self._lock)
        self._waiters = 0
        self._closed = False
        self._exhausted: str | None = None
        self._next_id = 0
        self._tasks: list[Task] = []
        self._done: collections.deque[Task] = collections.deque()
        self._listeners: list[collections.deque[Task]] = []  # as_completed calls under way
        self._unclaimed = 0
        self._counts = dict.fromkeys((QUEUED, RUNNING, FINISHED, FAILED, CANCELLED), 0)
        self._packer = Packer()
        self._deadlines = Deadlines(self._expire)
        if max_in_flight is None:  # the interface may know better (a batch system: thousands)
            hint = getattr(self.interface, "default_max_in_flight", None)
            max_in_flight = hint if isinstance(hint, int) and hint >= 1 else 256
        self._scheduler = Scheduler(self, scheduler_func, max_in_flight)
        _open_masters.add(self)
        _install_signal_handlers()
        self._call_quietly(self.hooks.attach_master, master=self)

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> Master:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Master interface={self.interface_name!r} tasks={len(self._tasks)}>"

    # -- the seed's API -----------------------------------------------------------------

    def submit_task(
        self,
        executable: Callable[..., Any] | str,
        input_data: Any = None,
        modules: Iterable[Any] = (),
        dep_funcs: Iterable[Callable[..., Any]] = (),
        data_files: Iterable[str] = (),
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> Task:
        """Queue ``executable`` (a callable, or a script's path) to run with ``input_data``.

        ``timeout`` (seconds of running, default the master's) and ``max_attempts``
        (runs allowed when workers are lost) override the master's settings for this task.
        """
        self._check_open()
        if max_attempts is not None:
            _check_count("max_attempts", max_attempts)
        _check_timeout(timeout)
        payload = self._packer.pack(executable, input_data, modules, dep_funcs, data_files)
        failed = None
        match_here = False
        with self._lock:
            self._check_open()
            self._next_id += 1
            task = Task(
                self, self._next_id, executable, input_data, payload,
                modules=tuple(modules or ()), dep_funcs=tuple(dep_funcs or ()),
                data_files=tuple(data_files or ()),
                max_attempts=max_attempts or self.max_attempts,
                timeout=timeout if timeout is not None else self.timeout,
            )
            self._tasks.append(task)
            self._unclaimed += 1
            self._counts[QUEUED] += 1
            if self._exhausted is None:
                match_here = self._scheduler.add(task, here=True)
            else:
                failed = self._fail(task, InterfaceError(self._exhausted))
        self._observe("on_task_submitted", task=task)
        if match_here:
            self._scheduler.match_here()
        if failed:
            self._observe_failures([failed])
        return task

    def get_result(
        self, task: Task | list[Task] | None = None, blocking: bool = True
    ) -> tuple[Task | None, Any]:
        """A finished task and its result, raising the task's own exception if it failed.

        ``task=None``: any finished task not yet handed out; a list: any of those; a Task:
        that one, every time. ``blocking=False`` returns ``(None, None)`` if none is done.
        """
        self._check_open()
        if task is None:
            chosen = self._wait_any(None, blocking)
        elif isinstance(task, Task):
            self._check_own(task)
            chosen = self._wait_one(task, blocking)
        elif isinstance(task, (list, tuple, set, frozenset)):
            wanted = list(task)
            if not wanted:
                raise TaskError("get_result was given an empty list of tasks")
            for item in wanted:
                self._check_own(item)
            chosen = self._wait_any(wanted, blocking)
        else:
            raise TaskError(
                f"get_result takes a Task, a list of Tasks or None, not {type(task).__name__}"
            )
        if chosen is None:
            return None, None
        if chosen._error is not None:
            raise chosen._error
        return chosen, chosen._result

    def get_status(self) -> dict[str, Any]:
        """The interface's status dictionary plus the master's task counters and tasks."""
        status = self._call_quietly(self.hooks.get_status)
        status = dict(status) if isinstance(status, dict) else {}
        with self._lock:
            status.update(
                interface=self.interface_name,
                submitted=len(self._tasks),
                queued=self._counts[QUEUED],
                running=self._counts[RUNNING],
                finished=self._counts[FINISHED],
                failed=self._counts[FAILED],
                cancelled=self._counts[CANCELLED],
                tasks=list(self._tasks),
            )
        return status

    def close(self, wait: bool = False) -> None:
        """Stop the interface once; queued and running tasks are abandoned unless ``wait``."""
        with self._lock:
            if self._closed:
                return
            if wait:
                while self._counts[QUEUED] or self._counts[RUNNING]:
                    self._wait_for_results()
            self._closed = True
            abandoned = self._scheduler.drain()
            abandoned += [t for t in self._tasks if t.state == RUNNING]
            failures = [
                self._fail(task, MasterClosedError(f"the master closed before {task} finished"))
                for task in abandoned
            ]
            self._scheduler.stop()
            self._deadlines.stop()
            self._results.notify_all()
        _open_masters.discard(self)
        self._observe_failures(failures)
        try:
            self.hooks.cleanup()
        except Exception:
            log.warning("the %s interface's cleanup failed", self.interface_name, exc_info=True)
        self._observe("on_master_closed", master=self)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    # -- beyond the seed ----------------------------------------------------------------

    def cancel(self, task: Task) -> bool:
        """Cancel a task: a queued one always, a running one if the interface can stop it.

        Returns False if the task had already ended or cannot be stopped. A cancelled
        task's ``get_result`` raises :class:`TaskCancelledError`.
        """
        self._check_own(task)
        with self._lock:
            if task.state == RUNNING and not self._has_stop_hook:
                return False
            if task.state not in (QUEUED, RUNNING):
                return False
            running = task.state == RUNNING
            failed = self._fail(task, TaskCancelledError(f"{task} was cancelled"), CANCELLED)
        if running:
            self._call_quietly(self.hooks.stop_task, task=task, worker=task.worker)
        self._observe_failures([failed])
        return True

    def add_observer(self, observer: Any) -> None:
        """Register an observer plugin (an object or a registered name) on this master."""
        for plugin in resolve_observers([observer]):
            try:
                self._manager.register(plugin)
            except Exception as exc:
                raise InterfaceError(f"observer {plugin!r} cannot be used: {exc}") from exc
        self._refresh_observed()

    def as_completed(self, tasks: Iterable[Task] | None = None,
                     timeout: float | None = None) -> Iterator[Task]:
        """Yield tasks as they finish (each once), failed ones included: check ``exception()``."""
        wanted = list(tasks) if tasks is not None else list(self._tasks)
        for task in wanted:
            self._check_own(task)
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = {id(t): t for t in wanted}
        # Each task that ends from now on is appended here, so no wake-up rescans them all.
        ended: collections.deque[Task] = collections.deque()
        with self._lock:
            self._listeners.append(ended)
            ended.extend(t for t in wanted if t.done())
        try:
            while pending:
                with self._lock:
                    while not ended:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise TimeoutError(
                                f"{len(pending)} tasks still running after {timeout} s"
                            )
                        self._check_open()
                        self._wait_for_results(remaining)
                    ready = []
                    while ended:
                        task = ended.popleft()
                        if pending.pop(id(task), None) is not None:
                            self._claim(task)
                            ready.append(task)
                yield from ready
        finally:
            with self._lock:
                self._listeners.remove(ended)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            **submit_options: Any) -> Iterator[Any]:
        """Like the builtin ``map``, run as tasks; results come in input order.

        Every task is submitted before the first result is awaited. The first failure
        is raised where its result would be; the tasks after it still run. Options such
        as ``timeout`` and ``max_attempts`` apply to each task.
        """
        arguments = zip(*iterables, strict=False)
        tasks = [self.submit_task(fn, args, **submit_options) for args in arguments]

        def results() -> Iterator[Any]:
            for task in tasks:
                yield self.get_result(task)[1]

        return results()

    # -- what interfaces call --------------------------------------------------------------

    def workers_changed(self) -> None:
        """Workers appeared or vanished: match again now instead of at the next poll."""
        with self._lock:
            self._exhausted = None
            self._scheduler.poke(workers_changed=True)

    def worker_up(self, worker: Any) -> None:
        """An interface reports a new worker: observers hear of it, the scheduler wakes."""
        self._observe("on_worker_up", worker=worker)
        self.workers_changed()

    def worker_down(self, worker: Any, reason: str) -> None:
        """An interface reports a worker gone (its tasks go through ``task.worker_lost``)."""
        self._observe("on_worker_lost", worker=worker, reason=reason)
        self.workers_changed()

    def workers_exhausted(self, reason: str) -> None:
        """No worker will ever come: fail what is queued (and later submissions) with ``reason``."""
        with self._lock:
            self._exhausted = reason
            failures = [self._fail(t, InterfaceError(reason)) for t in self._scheduler.drain()]
        self._observe_failures(failures)

    # -- internals ---------------------------------------------------------------------------

    def _virtual_task(self, name: str) -> Task:
        """A running task that no interface runs: its owner calls ``task_finished`` itself."""
        with self._lock:
            self._check_open()
            self._next_id += 1
            task = Task(self, self._next_id, name, None, None)  # type: ignore[arg-type]
            self._tasks.append(task)
            self._unclaimed += 1
            self._counts[QUEUED] += 1
            self._set_state(task, RUNNING)
            task.execute_time = time.time()
            self._scheduler.in_flight += 1
        return task

    def _check_open(self) -> None:
        if self._closed:
            raise MasterClosedError("this master is closed")

    def _check_own(self, task: Any) -> None:
        if not isinstance(task, Task):
            raise TaskError(f"expected a Task, got {type(task).__name__} {task!r}")
        if task._master is not self:
            raise TaskError(f"{task} was not submitted to this master")

    def _set_state(self, task: Task, state: str) -> None:
        """Lock held."""
        self._counts[task.state] -= 1
        self._counts[state] += 1
        task.state = state

    def _claim(self, task: Task) -> None:
        """Lock held."""
        if not task._claimed:
            task._claimed = True
            self._unclaimed -= 1

    def _finish(self, task: Task, state: str, wake: bool = True) -> None:
        """Lock held: ``task`` reached a final state; ``wake=False`` leaves waking the
        threads waiting for results to the caller."""
        self._set_state(task, state)
        task.finish_time = time.time()
        self._done.append(task)
        for listener in self._listeners:
            listener.append(task)
        if wake and self._waiters:
            self._results.notify_all()

    def _fail(self, task: Task, error: BaseException, state: str = FAILED) -> Task:
        """Lock held: end ``task`` with ``error``; the caller observes it after unlocking."""
        if task.state == RUNNING:
            self._scheduler.in_flight -= 1
            self._scheduler.poke()
        task._error = error
        self._finish(task, state)
        return task

    def _observe_failures(self, tasks: list[Task]) -> None:
        """Lock not held."""
        if "on_task_failed" in self._observed:
            for task in tasks:
                self._observe("on_task_failed", task=task, error=task._error)

    def _refresh_observed(self) -> None:
        self._observed = {
            name for name in self._manager.hook.__dict__
            if name.startswith("on_") and getattr(self.hooks, name).get_hookimpls()
        }

    def _started(self, task: Task) -> None:
        """Lock held: ``task`` was just matched with a worker."""
        if task.timeout is not None:
            self._deadlines.add(task, task.timeout, task.attempts)

    def _expire(self, task: Task, attempt: int) -> None:
        """Deadline thread: ``task`` ran past its timeout."""
        with self._lock:
            if task.state != RUNNING or task.attempts != attempt:
                return
            failed = self._fail(task, TaskTimeoutError(
                f"{task} ran longer than its timeout of {task.timeout} s"
                + ("" if self._has_stop_hook else
                   f"; the {self.interface_name} interface cannot stop it, so it runs on")
            ))
        self._call_quietly(self.hooks.stop_task, task=task, worker=task.worker)
        self._observe_failures([failed])

    def _task_ended(self, task: Task, error: BaseException | None, result: Any) -> None:
        """Any thread: the interface reported the end of ``task``.

        The task's end is recorded at once, but the threads waiting for results are
        woken last, after the worker went back to the interface: a woken thread then
        finds the lock free instead of queueing behind this one's remaining work.
        """
        with self._lock:
            live = task._live
            task._live = False
            if task.state != RUNNING:
                counted = False
            else:
                counted = True
                self._scheduler.in_flight -= 1
                if error is None:
                    task._result = result
                    self._finish(task, FINISHED, wake=False)
                else:
                    task._error = error
                    self._finish(task, FAILED, wake=False)
        live = live and not self._closed  # after cleanup() the interface owes us nothing
        if live:
            self._call_quietly(self._worker_finished, worker=task.worker)
        if live or counted:
            with self._lock:
                if counted and self._waiters:
                    self._results.notify_all()
                if live:
                    self._scheduler.poke(workers_changed=True)
        if counted and self._observed:
            if error is None:
                self._observe("on_task_done", task=task)
            else:
                self._observe("on_task_failed", task=task, error=error)

    def _task_lost(self, task: Task, reason: str, started: bool) -> None:
        """Any thread: the worker running ``task`` vanished."""
        retried = False
        failed = None
        with self._lock:
            task._live = False
            if task.state != RUNNING:
                return
            self._scheduler.in_flight -= 1
            if not started:
                task.attempts -= 1
            if task.attempts < task.max_attempts and not self._closed:
                self._set_state(task, QUEUED)
                task.worker = None
                if self._exhausted is None:
                    self._scheduler.add(task, front=True)
                else:
                    failed = self._fail(task, InterfaceError(self._exhausted))
                retried = started
            else:
                failed = self._fail(task, WorkerLostError(
                    f"{task} lost its worker {task.attempts} times, the most allowed "
                    f"(max_attempts={task.max_attempts}); last: {reason}"
                ))
            self._scheduler.poke(workers_changed=True)
        if retried:
            self._observe("on_task_retried", task=task, reason=reason)
        if failed:
            self._observe_failures([failed])

    def _wait_for_results(self, timeout: float | None = None) -> None:
        """Lock held: sleep until some task ends (or ``timeout`` passes)."""
        self._waiters += 1
        try:
            self._results.wait(timeout)
        finally:
            self._waiters -= 1

    def _wait_one(self, task: Task, blocking: bool) -> Task | None:
        with self._lock:
            while not task.done():
                if not blocking:
                    return None
                self._check_open()
                self._wait_for_results()
            self._claim(task)
        return task

    def _wait_any(self, wanted: list[Task] | None, blocking: bool) -> Task | None:
        with self._lock:
            while True:
                found = self._pop_done(wanted)
                if found is not None:
                    return found
                left = self._unclaimed if wanted is None else sum(not t._claimed for t in wanted)
                if not blocking:
                    return None
                if left == 0:
                    raise TaskError(
                        "no task left to wait for: every task asked about was already handed out"
                        if wanted is not None or self._tasks
                        else "no task left to wait for: none was submitted"
                    )
                self._check_open()
                self._wait_for_results()

    def _pop_done(self, wanted: list[Task] | None) -> Task | None:
        """Lock held: a finished, unclaimed task (of ``wanted``), now claimed."""
        if wanted is None:
            done = self._done
            while done:
                task = done.popleft()
                if not task._claimed:
                    self._claim(task)
                    return task
            return None
        for task in wanted:
            if not task._claimed and task.done():
                self._claim(task)
                return task
        return None

    def _call_quietly(self, hook: Any, **kwargs: Any) -> Any:
        try:
            return hook(**kwargs)
        except Exception:
            name = getattr(hook, "name", None) or getattr(hook, "__name__", hook)
            log.debug("optional hook %s raised; ignored", name, exc_info=True)
            return None

    def _observe(self, name: str, **kwargs: Any) -> None:
        if name in self._observed:
            try:
                getattr(self.hooks, name)(**kwargs)
            except Exception:
                log.warning("observer hook %s raised; ignored", name, exc_info=True)


def _check_count(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")


def _check_timeout(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, not {value!r}")


def _build_interface(interface: Any, options: dict[str, Any]) -> tuple[Any, str]:
    if interface is None or isinstance(interface, str):
        name, merged, _ = config.resolve(interface, options)
        return plugins.create_interface(name, merged), name
    if isinstance(interface, type):
        try:
            return interface(**options), interface.__name__
        except TypeError as exc:
            raise InterfaceError(f"cannot build {interface.__name__}: {exc}") from exc
    if options:
        raise InterfaceError(
            f"options {', '.join(sorted(options))} were given beside an interface instance; "
            "pass them to its constructor instead"
        )
    return interface, type(interface).__name__


@atexit.register
def _close_all() -> None:
    """No worker process or batch job outlives the program."""
    for master in list(_open_masters):
        try:
            master.close()
        except Exception:
            log.warning("closing %r at exit failed", master, exc_info=True)


_signals_installed = False


def _install_signal_handlers() -> None:
    """Turn SIGTERM into a normal exit (so cleanup runs) unless the program set its own."""
    global _signals_installed
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    _signals_installed = True
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
