"""The life of a task and of each of its attempts, in one place.

Every change of a task's state happens here, under one lock, as a named transition::

    submit ─► QUEUED ─start─► RUNNING ─attempt_finished─► FINISHED | FAILED
                 ▲               │ ├─attempt_lost─► QUEUED again (retry) | FAILED
                 └───────────────┘ ├─cancel────────► CANCELLED (the attempt is stopped)
                                   ├─expire────────► FAILED (timeout; the attempt is stopped)
                                   └─close─────────► FAILED (master closed)

An *attempt* is one run of a task on one worker. Interfaces report on attempts; a
report on an attempt that is no longer its task's current one (it was stopped, or it
was already reported) changes nothing but the worker's slot. The in-flight count, the
payload's lifetime (released when the attempt is reported) and the forgetting of
handed-out tasks live here too: the master keeps a task only until the user got it.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pymw_core.errors import (
    InterfaceError,
    MasterClosedError,
    RemoteTraceback,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
    WorkerLostError,
)
from pymw_core.task import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING, Attempt, Task

if TYPE_CHECKING:
    from pymw_core.journal import Journal, Outcome
    from pymw_core.scheduler import Scheduler

log = logging.getLogger("pymw")
_SMALL_LIST = 64  # get_result(list) scans lists up to this size; larger ones are indexed


class Lifecycle:
    """Owns the state of every task and attempt of one master; the only writer of it.

    ``observe(hook_name, **kwargs)`` tells observers, ``worker_finished(worker)`` and
    ``stop(attempt)`` call the interface; all three run with the lock released.
    """

    def __init__(
        self,
        observe: Callable[..., None],
        worker_finished: Callable[[Any], None] | None,
        stop: Callable[[Attempt], None],
        can_stop: bool,
    ) -> None:
        self.lock = threading.Lock()
        self._results = threading.Condition(self.lock)
        self._observe = observe
        self._worker_finished = worker_finished
        self._stop = stop
        self.can_stop = can_stop
        self.scheduler: Scheduler | None = None  # wired by the master
        self.deadlines: Any = None
        self.counts = dict.fromkeys((QUEUED, RUNNING, FINISHED, FAILED, CANCELLED), 0)
        self.submitted = 0
        self.in_flight = 0  # attempts of RUNNING tasks: what max_in_flight bounds
        self.closed = False
        self.exhausted: str | None = None  # why no worker will ever come
        self._waiters = 0
        self._held: dict[int, Task] = {}  # every task not yet handed out
        self._done: collections.deque[Task] = collections.deque()  # ended, maybe unclaimed
        self._listeners: list[collections.deque[Task]] = []  # as_completed calls under way
        self._unclaimed = 0
        self._stale = 0  # handed-out tasks still in _done
        self._task_ids = itertools.count(1)
        self._next_attempt = 0
        self._wanted: _WantedIndex | None = None
        self.journal: Journal | None = None  # wired by the master when it has one

    # -- submission ---------------------------------------------------------------------

    def new_id(self) -> int:
        """A task id, unique in this master (any thread; no lock needed)."""
        return next(self._task_ids)

    def submit(self, task: Task) -> bool:
        """Queue ``task``. True means the caller runs the matching round itself (see
        :meth:`Scheduler.add`)."""
        failed = None
        match_here = False
        with self.lock:
            self._admit(task)
            if self.exhausted is None:
                match_here = self.scheduler.add(task, here=True)  # type: ignore[union-attr]
            else:
                failed = self._end(task, FAILED, InterfaceError(self.exhausted))
        self._observe("on_task_submitted", task=task)
        if failed is not None:
            self._observe_failed([failed])
        return match_here

    def virtual(self, task: Task) -> Task:
        """A task that runs on no worker: its owner finishes it through ``task_finished``."""
        with self.lock:
            self._admit(task)
            self.start(task, None).number = 0  # number 0: no interface runs it
        return task

    def _admit(self, task: Task) -> None:
        """Lock held: a new task, counted as queued and held until it is handed out."""
        if self.closed:
            raise MasterClosedError("this master is closed")
        self._held[task.id] = task
        self.submitted += 1
        self._unclaimed += 1
        self.counts[QUEUED] += 1
        if task._journal is not None:
            self.journal.submitted(task._journal, task.submit_time)  # type: ignore[union-attr]

    def resumed(self, task: Task, outcome: Outcome) -> Task:
        """A task the journal holds as ended: it ends now as it did then; nothing runs."""
        error = None
        if not outcome.ok:
            error, tb = outcome.value
            if isinstance(error, BaseException) and tb:
                error.__cause__ = RemoteTraceback(tb)
        with self.lock:
            self._admit(task)
            task.stdout, task.stderr = outcome.stdout, outcome.stderr
            if error is None:
                task._result = outcome.value
                self._end(task, FINISHED, None)
            else:
                self._end(task, FAILED, error)
        self._observe("on_task_submitted", task=task)
        if error is None:
            self._observe("on_task_done", task=task)
        else:
            self._observe("on_task_failed", task=task, error=error)
        return task

    def reattach(self, task: Task, take: Callable[[Attempt], bool]) -> bool:
        """A task of an earlier run that an interface may still be running: ``take(attempt)``
        asks the interface to take it over (``reattach_task``). True: it did, and will
        report on the attempt. False: the task is queued as any other (nothing ran twice:
        the interface found nothing of it running)."""
        with self.lock:
            self._admit(task)
            attempt = self.start(task, None)
        self._observe("on_task_submitted", task=task)
        try:
            took = bool(take(attempt))
        except Exception:
            log.warning("re-attaching %s failed; it is submitted anew", task, exc_info=True)
            took = False
        if took:
            return True
        with self.lock:
            if attempt.reported or task._attempt is not attempt or task.state != RUNNING:
                return True  # reported already after all
            attempt.reported = True
            attempt.payload = None
            task.attempts -= 1
            self.in_flight -= 1
            if task._journal is not None:
                self.journal.ended(task._journal.row, attempt.id, "cancelled",  # type: ignore[union-attr]
                                   "not re-attached: submitted anew", QUEUED, None, None)
            self._move(task, QUEUED)
            self.scheduler.add(task)  # type: ignore[union-attr]
            self.scheduler.poke(workers_changed=True)  # type: ignore[union-attr]
        return False

    def record_handle(self, attempt: Attempt, data: dict) -> None:
        """What the interface needs to re-attach to ``attempt`` after the master's death."""
        task = attempt.task
        if self.journal is None or task._journal is None:
            return
        with self.lock:
            self.journal.handle(task._journal.row, data)

    def sync_journal(self, tasks: Iterable[Task] | None = None) -> None:
        """Return once the ends of ``tasks`` (default: every end so far) are committed to
        the journal (before a handout); a task's own end suffices, not later rows."""
        if self.journal is None:
            return
        if tasks is None:
            self.journal.sync()
            return
        upto = 0
        for task in tasks:
            entry = task._journal
            if entry is None:
                continue
            if entry.seq is None:
                self.journal.sync()
                return
            upto = max(upto, entry.seq)
        if upto:
            self.journal.sync(upto=upto)

    # -- attempts (lock held where it says so) -------------------------------------------

    def start(self, task: Task, worker: Any) -> Attempt:
        """Lock held: ``task`` was matched with ``worker``; its next attempt begins."""
        self._next_attempt += 1
        task.attempts += 1
        number = task._attempt.number + 1 if task._attempt is not None else 1
        attempt = Attempt(self, self._next_attempt, task, worker, number)
        attempt.started_at = time.time()  # handed over now; a queueing interface resets it
        task._attempt = attempt
        task.worker = worker
        task.execute_time = attempt.started_at
        self._move(task, RUNNING)
        self.in_flight += 1
        if task._journal is not None and number:
            self.journal.started(task._journal, attempt.id, number, worker,  # type: ignore[union-attr]
                                 attempt.started_at)
        if task.timeout is not None and self.deadlines is not None:
            self.deadlines.add(attempt, task.timeout)
        return attempt

    def attempt_finished(self, attempt: Attempt, error: BaseException | None, result: Any,
                         stdout: str | None, stderr: str | None,
                         seconds: float | None) -> None:
        """Any thread: the interface reports the end of ``attempt``.

        The end is recorded at once, but waiting threads are woken last, after the
        worker went back to the interface: a woken thread then finds the lock free.
        """
        task = attempt.task
        with self.lock:
            if attempt.reported:
                return
            attempt.reported = True
            attempt.payload = None
            counted = task._attempt is attempt and task.state == RUNNING
            if counted:
                if stdout is not None:
                    task.stdout = stdout
                if stderr is not None:
                    task.stderr = stderr
                if seconds is not None:
                    task._worker_seconds = seconds
                if error is None:
                    task._result = result
                    self._end(task, FINISHED, None, wake=False)
                else:
                    _say_where(error, attempt)
                    self._end(task, FAILED, error, wake=False)
            free = attempt.number > 0 and not self.closed  # after cleanup() nothing is owed
        if free and self._worker_finished is not None:
            self._worker_finished(attempt.worker)
        with self.lock:
            if counted and self._waiters:
                self._results.notify_all()
            if free:
                self.scheduler.poke(workers_changed=True)  # type: ignore[union-attr]
        if counted:
            if error is None:
                self._observe("on_task_done", task=task)
            else:
                self._observe("on_task_failed", task=task, error=error)

    def attempt_lost(self, attempt: Attempt, reason: str, started: bool) -> None:
        """Any thread: the worker running ``attempt`` vanished.

        The task runs again unless it used up ``max_attempts``; ``started=False`` (it
        was only queued on that worker) does not count. The interface restores its
        own slots for a lost worker and calls ``workers_changed()``.
        """
        task = attempt.task
        retried = False
        failed = None
        with self.lock:
            if attempt.reported:
                return
            attempt.reported = True
            attempt.payload = None
            if task._attempt is not attempt or task.state != RUNNING:
                return  # stopped or ended already: nothing to retry
            if not started:
                task.attempts -= 1
            if task.attempts < task.max_attempts and not self.closed:
                task.worker = None
                if self.exhausted is None:
                    self.in_flight -= 1
                    self._move(task, QUEUED)
                    if task._journal is not None:
                        self.journal.ended(task._journal.row, attempt.id, "lost",  # type: ignore[union-attr]
                                           reason, QUEUED, None, None)
                    self.scheduler.add(task, front=True)  # type: ignore[union-attr]
                    retried = started
                else:
                    failed = self._end(task, FAILED, InterfaceError(self.exhausted))
            else:
                failed = self._end(task, FAILED, WorkerLostError(
                    f"{task} lost its worker {task.attempts} times, the most allowed "
                    f"(max_attempts={task.max_attempts}); last: {reason} ({attempt.where})"
                ))
            self.scheduler.poke(workers_changed=True)  # type: ignore[union-attr]
        if retried:
            self._observe("on_task_retried", task=task, reason=reason)
        if failed is not None:
            self._observe_failed([failed])

    # -- ends decided by the master -----------------------------------------------------

    def cancel(self, task: Task, running: bool = True) -> bool:
        """Cancel a queued task, or (``running``, and the interface can stop it) a running
        one. False if it had ended already or cannot be stopped."""
        with self.lock:
            if task.state == RUNNING and not (running and self.can_stop):
                return False
            if task.state not in (QUEUED, RUNNING):
                return False
            attempt = task._attempt if task.state == RUNNING else None
            failed = self._end(task, CANCELLED, TaskCancelledError(f"{task} was cancelled"))
        if attempt is not None:
            self._stop(attempt)
        self._observe_failed([failed])
        return True

    def expire(self, attempt: Attempt) -> None:
        """Deadline thread: ``attempt`` ran past its task's timeout."""
        task = attempt.task
        with self.lock:
            if task._attempt is not attempt or attempt.reported or task.state != RUNNING:
                return
            failed = self._end(task, FAILED, TaskTimeoutError(
                f"{task} ran longer than its timeout of {task.timeout} s ({attempt.where})"
                + ("" if self.can_stop else "; the interface cannot stop it, so it runs on")
            ))
        self._stop(attempt)
        self._observe_failed([failed])

    def exhaust(self, reason: str) -> None:
        """No worker will ever come: fail what is queued, and later submissions, with it."""
        with self.lock:
            self.exhausted = reason
            failures = [self._end(t, FAILED, InterfaceError(reason))
                        for t in self.scheduler.drain()]  # type: ignore[union-attr]
        self._observe_failed(failures)

    def rematch(self) -> None:
        """Workers changed in a way that does not bring new ones: match again."""
        with self.lock:
            self.scheduler.poke(workers_changed=True)  # type: ignore[union-attr]

    def workers_back(self) -> None:
        """Workers appeared: submissions queue again."""
        with self.lock:
            self.exhausted = None
            self.scheduler.poke(workers_changed=True)  # type: ignore[union-attr]

    def close(self, wait: bool) -> bool:
        """Abandon what is queued or running (after it all ended, with ``wait``).

        False if the master was closed already.
        """
        with self.lock:
            if self.closed:
                return False
            if wait:
                while self.counts[QUEUED] or self.counts[RUNNING]:
                    self._wait_locked(None)
            self.closed = True
            abandoned = self.scheduler.drain()  # type: ignore[union-attr]
            abandoned += [t for t in self._held.values() if t.state == RUNNING]
            failures = [
                self._end(task, FAILED,
                          MasterClosedError(f"the master closed before {task} finished"))
                for task in abandoned
            ]
            self.scheduler.stop()  # type: ignore[union-attr]
            if self.deadlines is not None:
                self.deadlines.stop()
            self._results.notify_all()
        self._observe_failed(failures)
        return True

    # -- handing out --------------------------------------------------------------------

    def wait_one(self, task: Task, blocking: bool) -> Task | None:
        """``task`` once it ended (claimed); None if not yet and not ``blocking``."""
        with self.lock:
            while not task.done():
                if not blocking:
                    return None
                self._wait_locked(None)
            self._claim(task)
        return task

    def wait_any(self, wanted: list[Task] | None, blocking: bool,
                 check: Callable[[Any], None] | None = None) -> Task | None:
        """An ended task not yet handed out (of ``wanted``), now claimed.

        ``check(item)`` vets each item of ``wanted`` (raising for a stranger) when the
        list is first seen.
        """
        with self.lock:
            index = None if wanted is None else self._index(wanted, check)
            while True:
                found = self._pop_done(index)
                if found is not None:
                    return found
                if not blocking:
                    return None
                if self.closed:
                    raise MasterClosedError("this master is closed")
                left = self._unclaimed if index is None else index.unclaimed
                if left == 0:
                    raise TaskError(
                        "no task left to wait for: every task asked about was already handed out"
                        if wanted is not None or self.submitted
                        else "no task left to wait for: none was submitted"
                    )
                self._wait_locked(None)

    def completed(self, tasks: Iterable[Task] | None,
                  timeout: float | None) -> Iterable[Task]:
        """Yield tasks (default: every one not yet handed out) as they end, each once."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ended: collections.deque[Task] = collections.deque()
        with self.lock:
            wanted = list(self._held.values()) if tasks is None else list(tasks)
            self._listeners.append(ended)
            ended.extend(t for t in wanted if t.done())
        pending = {id(t): t for t in wanted}
        try:
            while pending:
                with self.lock:
                    while not ended:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise TimeoutError(
                                f"{len(pending)} tasks still running after {timeout} s"
                            )
                        self._wait_locked(remaining)
                    ready = []
                    while ended:
                        task = ended.popleft()
                        if pending.pop(id(task), None) is not None:
                            self._claim(task)
                            ready.append(task)
                self.sync_journal(ready)
                yield from ready
        finally:
            with self.lock:
                self._listeners.remove(ended)

    def held(self) -> list[Task]:
        """Every task not yet handed out."""
        with self.lock:
            return list(self._held.values())

    # -- internals (lock held) -------------------------------------------------------------

    def _move(self, task: Task, state: str) -> None:
        self.counts[task.state] -= 1
        self.counts[state] += 1
        task.state = state

    def _end(self, task: Task, state: str, error: BaseException | None,
             wake: bool = True) -> Task:
        """``task`` reached a final state; its payload goes (the attempt keeps its own
        reference until the interface reports)."""
        if task.state == RUNNING:
            self.in_flight -= 1
            self.scheduler.poke()  # type: ignore[union-attr]
        was_running = task.state == RUNNING
        task._error = error
        task.payload = None
        self._move(task, state)
        task.finish_time = time.time()
        if task._journal is not None:
            self._journal_end(task, state, error, was_running)
        self._done.append(task)
        for listener in self._listeners:
            listener.append(task)
        if wake and self._waiters:
            self._results.notify_all()
        return task

    def _journal_end(self, task: Task, state: str, error: BaseException | None,
                     was_running: bool) -> None:
        """Lock held: record the end of ``task`` (and of its running attempt)."""
        attempt = task._attempt
        ran = was_running and attempt is not None and attempt.number > 0
        closed = error is not None and isinstance(error, MasterClosedError)
        if not ran:
            outcome = None
        elif error is None:
            outcome = "ok"
        elif isinstance(error, TaskTimeoutError):
            outcome = "timeout"
        elif state == CANCELLED or closed:
            outcome = "cancelled"
        elif isinstance(error, (WorkerLostError, InterfaceError)):
            outcome = "lost"
        else:
            outcome = "error"
        # A task the master abandoned at close() was not answered: it is "cancelled" in the
        # journal (no result), so that a later run runs it rather than replay a failure.
        result = ((error, task._result, task.stdout, task.stderr)
                  if state != CANCELLED and not closed else None)
        task._journal.seq = self.journal.ended(  # type: ignore[union-attr]
            task._journal.row, attempt.id if ran else None, outcome,  # type: ignore[union-attr]
            None if error is None else _last_line(error),
            CANCELLED if closed else state, task.finish_time, result)

    def _claim(self, task: Task, in_done: bool = True) -> None:
        """``task`` (ended) is handed out: the master forgets it.

        ``in_done=False``: the caller already took it off the queue of ended tasks.
        """
        if not task._claimed:
            task._claimed = True
            self._unclaimed -= 1
            self._held.pop(task.id, None)
            if self._wanted is not None:
                self._wanted.claimed(task)
            if not in_done:
                return
            done = self._done
            if done and done[0] is task:  # handed out in the order they ended: the usual case
                done.popleft()
                return
            if done and done[-1] is task:
                done.pop()
                return
            # Others stay in the queue of ended tasks until passed over; drop them in
            # one sweep once they are most of it.
            self._stale += 1
            if self._stale > 64 and self._stale * 2 > len(self._done):
                self._done = collections.deque(t for t in self._done if not t._claimed)
                self._stale = 0

    def _pop_done(self, index: _WantedIndex | None) -> Task | None:
        done = self._done
        if index is None:
            while done:
                task = done.popleft()
                if not task._claimed:
                    self._claim(task, in_done=False)
                    return task
                self._stale -= 1
            return None
        if index.small is not None:
            for task in index.small:
                if not task._claimed and task.done():
                    self._claim(task)
                    return task
            return None
        ids = index.ids
        for task in done:  # ended tasks, most of them handed out already or few
            if not task._claimed and id(task) in ids:
                self._claim(task)
                return task
        return None

    def _index(self, wanted: list[Task],
               check: Callable[[Any], None] | None) -> _WantedIndex:
        """The index of ``wanted``, reused while the caller passes an equal list."""
        cached = self._wanted
        small = len(wanted) <= _SMALL_LIST
        if small or cached is None or cached.tasks != wanted:  # identity per item: C speed
            if check is not None:
                for item in wanted:
                    check(item)
            cached = _WantedIndex(wanted, small=small)
            if not small:
                self._wanted = cached
        return cached

    def _wait_locked(self, timeout: float | None) -> None:
        if self.closed:
            raise MasterClosedError("this master is closed")
        self._waiters += 1
        try:
            self._results.wait(timeout)
        finally:
            self._waiters -= 1

    def _observe_failed(self, tasks: list[Task]) -> None:
        for task in tasks:
            self._observe("on_task_failed", task=task, error=task._error)


def _say_where(error: BaseException, attempt: Attempt) -> None:
    """A task's error names the host, worker and attempt it came from, as a note (the
    exception keeps its own type and message; Python prints notes after the message)."""
    if attempt.number <= 0:
        return  # no interface ran it
    note = f"(PyMW: the task raised this {attempt.where})"
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list) and note in notes:
        return
    try:
        if hasattr(error, "add_note"):
            error.add_note(note)
        elif notes is None:
            error.__notes__ = [note]  # type: ignore[attr-defined]  # Python 3.10
        elif isinstance(notes, list):
            notes.append(note)
    except Exception:  # an exception that refuses attributes stays as it is
        log.debug("could not add a note to %r", error, exc_info=True)


def _last_line(error: BaseException | None) -> str | None:
    """An error's last line, ``TypeName: message``, for the attempts table."""
    if error is None:
        return None
    text = f"{type(error).__name__}: {error}".strip()
    return text.splitlines()[-1] if text else type(error).__name__


class _WantedIndex:
    """What ``get_result(list)`` asks about: a set of ids and a count of unclaimed tasks.

    Kept between calls with an equal list, so a loop over one long list costs a compare
    per call instead of a scan (20,000 tasks: quadratic before).
    """

    __slots__ = ("ids", "small", "tasks", "unclaimed")

    def __init__(self, wanted: list[Task], small: bool) -> None:
        self.tasks = list(wanted)
        self.small = self.tasks if small else None
        self.ids = frozenset() if small else frozenset(map(id, wanted))
        self.unclaimed = sum(1 for t in wanted if not t._claimed)

    def claimed(self, task: Task) -> None:
        if id(task) in self.ids:
            self.unclaimed -= 1
