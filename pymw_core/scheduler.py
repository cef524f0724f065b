"""Matching: queued tasks meet free workers, and ``execute_task`` runs off this thread.

One scheduler thread per master matches in batches; a small pool of dispatch threads
(grown only while every one is busy in a blocking ``execute_task``) makes the calls.
No thread per task.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

from pymw_core.connection import batched_writes
from pymw_core.plugins import direct_call
from pymw_core.task import QUEUED

if TYPE_CHECKING:
    from pymw_core.lifecycle import Lifecycle
    from pymw_core.task import Attempt, Task

log = logging.getLogger("pymw")
_MAX_DISPATCH_THREADS = 256  # blocking execute_task calls at once, whatever max_in_flight is
Matcher = Callable[[list, list], "tuple[Any, Any]"]


class Dispatcher:
    """Calls ``execute_task`` on a few reusable threads; an exception fails that attempt."""

    def __init__(self, call: Callable[..., Any], limit: int) -> None:
        self._call = call
        self._limit = limit
        self._queue: SimpleQueue = SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []

    def put(self, attempt: Attempt, worker: Any) -> None:
        self._queue.put((attempt, worker))
        if self._idle:  # racy read: at worst one thread more, started below under the lock
            return
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._limit:
                thread = threading.Thread(
                    target=self._run, name=f"pymw-dispatch-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                self._idle += 1
                thread.start()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            with self._lock:
                self._idle -= 1
            if item is None:
                return
            attempt, worker = item
            try:
                self._call(task=attempt, worker=worker)
            except BaseException as exc:  # the interface's failure is this task's answer
                attempt.task_finished(exc)
            item = attempt = worker = None  # an idle thread holds no task alive
            with self._lock:
                self._idle += 1


class Scheduler:
    """Owns the queue. Every method that says "lock held" runs under ``life.lock``.

    Tasks leave the queue through :meth:`Lifecycle.start`, which makes their attempt.
    """

    POLL_SECONDS = 0.1  # re-ask get_available_workers this often when none are free

    def __init__(self, life: Lifecycle, hooks: Any, interface: Any, matcher: Matcher | None,
                 max_in_flight: int, call_quietly: Callable[..., Any],
                 observe: Callable[..., None]) -> None:
        self._life = life
        self._hooks = hooks
        self._matcher = matcher
        self._call_quietly = call_quietly
        self._observe = observe
        self.max_in_flight = max_in_flight
        self.queue: collections.deque[Task] = collections.deque()
        self._wake = threading.Condition(life.lock)
        self._sleeping = False
        self._starved = False
        self._stopped = False
        self._matching = False  # a thread is in a matching round (see _round)
        self._has_workers_hook = bool(self._hooks.get_available_workers.get_hookimpls())
        self._get_workers = direct_call(self._hooks.get_available_workers)
        # None when the interface has no reserve_worker: nothing to call per task.
        self._reserve = (direct_call(self._hooks.reserve_worker)
                         if self._hooks.reserve_worker.get_hookimpls() else None)
        self._execute = direct_call(self._hooks.execute_task)
        # An interface whose execute_task only hands the task over says so with
        # ``blocking_execute = False``: then it is called right here, no thread hop.
        self._inline = getattr(interface, "blocking_execute", True) is False
        self._dispatcher = Dispatcher(self._execute, min(max_in_flight, _MAX_DISPATCH_THREADS))
        self._thread = threading.Thread(target=self._run, name="pymw-scheduler", daemon=True)
        self._thread.start()

    # -- called with the lock held ------------------------------------------------------

    def add(self, task: Task, front: bool = False, here: bool = False) -> bool:
        """Queue ``task``. True means: the caller matches it itself, with :meth:`match_here`.

        Only a caller that offers (``here``) is asked to, for an interface that never
        blocks in ``execute_task``, when nothing else is queued or running and no
        thread is matching: the task then leaves on the submitting thread without
        waking the scheduler thread (one thread switch less on a lone task's round
        trip). With tasks running, a burst of submissions is left to the scheduler
        thread, which matches what has gathered in one round: each round asks the
        interface for its free workers, a list as long as the workers are many.
        Otherwise the scheduler thread is woken only if it can act: while no worker
        is free, a finishing task wakes it, not every submission.
        """
        if front:
            self.queue.appendleft(task)
        else:
            self.queue.append(task)
        # A user's matcher may take this task where it declined the others: ask it now.
        starved = self._starved and self._matcher is None
        if starved or self._stopped or self._life.in_flight >= self.max_in_flight:
            return False
        if (here and self._inline and not self._matching and len(self.queue) == 1
                and self._life.in_flight == 0):
            self._matching = True
            return True
        if self._sleeping:
            self._wake.notify()
        return False

    def poke(self, workers_changed: bool = False) -> None:
        """Something changed (a worker freed, a task ended): wake the thread if it can act.

        With nothing queued there is nothing to match: the wake-up would be wasted, a
        thread switch per finished task.
        """
        if workers_changed:
            self._starved = False
        if self._sleeping and self.queue:
            self._wake.notify()

    def drain(self) -> list[Task]:
        """Empty the queue, returning the tasks still waiting in it."""
        waiting = [t for t in self.queue if t.state == QUEUED]
        self.queue.clear()
        return waiting

    def stop(self) -> None:
        self._stopped = True
        self._wake.notify()

    # -- the scheduler thread -----------------------------------------------------------

    def _run(self) -> None:
        lock = self._life.lock
        while True:
            with lock:
                while not self._stopped and (
                    not self.queue or self._life.in_flight >= self.max_in_flight or self._starved
                    or self._matching
                ):
                    self._sleeping = True
                    self._wake.wait(self.POLL_SECONDS if self._starved else None)
                    self._sleeping = False
                    self._starved = False
                if self._stopped:
                    break
                self._matching = True
            self._round()
        self._dispatcher.stop()

    def match_here(self) -> None:
        """Lock not held: the matching round :meth:`add` handed to the calling thread."""
        self._round()

    def _round(self) -> None:
        """Match what can be matched now and hand it over; ``_matching`` was set by the caller.

        One thread at a time runs a round (the scheduler thread, or a submitter that
        :meth:`add` chose), so tasks leave in queue order and workers are never
        double-booked.
        """
        lock = self._life.lock
        pairs: list[tuple[Attempt, Any]] = []
        try:
            workers = self._available_workers()
            with lock:
                if self._stopped:
                    return
                pairs = self._match(workers)
                if not pairs and self.queue:
                    self._starved = True
            with batched_writes():  # the round's frames to one worker leave in one write
                for attempt, worker in pairs:
                    if self._reserve is not None:
                        self._call_quietly(self._reserve, worker=worker)
                    self._observe("on_task_started", task=attempt.task, worker=worker)
                    if self._inline:
                        try:
                            self._execute(task=attempt, worker=worker)
                        except BaseException as exc:  # the interface's failure: the answer
                            attempt.task_finished(exc)
                    else:
                        self._dispatcher.put(attempt, worker)
        finally:
            with lock:
                self._matching = False
                if self._sleeping and self.queue:  # tasks came while this round ran
                    self._wake.notify()

    def _available_workers(self) -> list | None:
        if not self._has_workers_hook:
            return None
        try:
            workers = self._get_workers()
        except Exception:
            log.debug("get_available_workers raised; treating every worker as None", exc_info=True)
            return None
        return workers if isinstance(workers, list) else None

    def _next_queued(self) -> Task | None:
        queue = self.queue
        while queue:
            task = queue.popleft()
            if task.state == QUEUED:
                return task
        return None

    def _match(self, workers: list | None) -> list[tuple[Attempt, Any]]:
        room = self.max_in_flight - self._life.in_flight
        if workers is not None:
            room = min(room, len(workers))
        pairs: list[tuple[Task, Any]] = []
        if self._matcher is None or workers is None:
            for index in range(room):
                task = self._next_queued()
                if task is None:
                    break
                pairs.append((task, None if workers is None else workers[index]))
        else:
            pairs = self._match_custom(list(workers), room)
        start = self._life.start
        return [(start(task, worker), worker) for task, worker in pairs]

    def _match_custom(self, workers: list, room: int) -> list[tuple[Task, Any]]:
        """PyMW's matcher contract: ``(tasks, workers) -> (task, worker)``, one pair a call."""
        tasks = [t for t in self.queue if t.state == QUEUED]
        pairs: list[tuple[Task, Any]] = []
        while tasks and workers and len(pairs) < room:
            try:
                task, worker = self._matcher(tasks, workers)  # type: ignore[misc]
            except Exception:
                log.debug("the task matcher raised; using first-come-first-served", exc_info=True)
                task, worker = tasks[0], workers[0]
            if task is None:
                break
            if not any(t is task for t in tasks):
                task = tasks[0]
            if worker not in workers:
                worker = workers[0]
            tasks = [t for t in tasks if t is not task]
            workers.remove(worker)
            pairs.append((task, worker))
        chosen = {id(t) for t, _ in pairs}
        self.queue = collections.deque(t for t in self.queue if id(t) not in chosen)
        return pairs
