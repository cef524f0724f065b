"""The attempt model with real worker processes: stops that hit only what they name,
submits that never wait on a busy worker, and workers that cannot start."""

from __future__ import annotations

import os
import threading
import time

import pytest
from pymw_testing import file_text, wait_until

from pymw_core import (
    InterfaceError,
    Master,
    MasterClosedError,
    TaskCancelledError,
    TaskTimeoutError,
    WorkerLostError,
)


def nap(seconds):
    time.sleep(seconds)
    return seconds


def square(x):
    return x * x


def wait_for_file(path, limit):
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(path)


def size_of(blob):
    return len(blob)


def test_a_stop_never_hits_the_task_queued_behind_it():
    """A timeout close to the task's own run time races its end; the task queued behind
    it on the same process (max_attempts=1: one loss would fail it) must never pay."""
    with Master("local", num_workers=1, prefetch=1) as m:
        timed_out = 0
        for trial in range(25):
            run = 0.04 + 0.002 * (trial % 10)
            first = m.submit_task(nap, (run,), timeout=run)
            behind = m.submit_task(square, (trial,), max_attempts=1)
            assert m.get_result(behind)[1] == trial * trial, f"trial {trial}"
            try:
                m.get_result(first)
            except TaskTimeoutError:
                timed_out += 1
        # a stop that came too late (the task had ended) touches nothing at all
        assert m.get_status()["restarts"] <= timed_out


def test_submitting_big_tasks_never_waits_on_a_busy_worker(tmp_path):
    release = str(tmp_path / "release")
    with Master("local", num_workers=2, prefetch=20) as m:
        busy = m.submit_task(wait_for_file, (release, 60))
        wait_until(lambda: busy.state == "running", 10, "the busy task to start")
        blob = b"x" * 250_000
        tasks = [m.submit_task(size_of, (blob,)) for _ in range(40)]
        # Every submit returned while the busy task still waits: the other process
        # runs the big tasks meanwhile.
        wait_until(lambda: any(t.done() for t in tasks), 30, "a big task to finish")
        assert not busy.done()
        open(release, "w").close()
        assert m.get_result(busy)[1] is True
        assert [m.get_result(t)[1] for t in tasks] == [250_000] * 40


def test_many_workers_that_cannot_start_give_up_without_charging_tasks(monkeypatch):
    import pymw_local.interface as li

    monkeypatch.setattr(li.sys, "executable", "/bin/false")
    with Master("local", num_workers=4) as m:
        tasks = [m.submit_task(square, (i,)) for i in range(6)]
        for task in tasks:
            with pytest.raises(InterfaceError, match="die as they start"):
                m.get_result(task)
        assert all(t.attempts == 0 for t in tasks)
        restarts = m.get_status()["restarts"]
        time.sleep(0.5)
        assert m.get_status()["restarts"] == restarts  # it stopped replacing them


def mark_then_wait(started, path, limit):
    with open(started, "w") as fh:
        fh.write(str(os.getpid()))
    return wait_for_file(path, limit)


def say_then_die(status):
    # The task dies before its output is taken: its guardian passes its last stderr on.
    os.write(2, b"the worker's own last words\n")
    os._exit(status)


def test_a_lost_worker_error_carries_the_processs_last_stderr_lines():
    with Master("local", num_workers=1, max_attempts=1) as m:
        with pytest.raises(WorkerLostError, match=r"(?s)exited with status 3.*"
                           r"its last output:.*the worker's own last words"):
            m.get_result(m.submit_task(say_then_die, (3,)))


class Ends:
    """Observer: every end reported (done or failed) and every worker up or lost."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ends: list[tuple[int, str]] = []
        self.up = 0
        self.lost = 0

    def on_task_done(self, task):
        with self.lock:
            self.ends.append((task.id, "done"))

    def on_task_failed(self, task, error):
        with self.lock:
            self.ends.append((task.id, type(error).__name__))

    def on_worker_up(self, worker):
        with self.lock:
            self.up += 1

    def on_worker_lost(self, worker, reason):
        with self.lock:
            self.lost += 1


def test_each_task_ends_once_for_observers_through_cancel_timeout_and_close(tmp_path):
    ends = Ends()
    m = Master("local", num_workers=2, prefetch=0, observers=[ends])
    try:
        done = m.submit_task(square, (3,))
        assert m.get_result(done)[1] == 9
        timed = m.submit_task(nap, (60,), timeout=0.3)
        with pytest.raises(TaskTimeoutError):
            m.get_result(timed)
        running = m.submit_task(mark_then_wait, (str(tmp_path / "started"),
                                                 str(tmp_path / "never"), 60))
        file_text(tmp_path / "started", 30, "the task to start on its process")
        assert running.cancel()
        with pytest.raises(TaskCancelledError):
            m.get_result(running)
        queued_first = m.submit_task(nap, (60,))
        queued_second = m.submit_task(nap, (60,))
        abandoned = m.submit_task(nap, (60,))  # both processes busy: it waits in the queue
        wait_until(lambda: queued_first.state == queued_second.state == "running", 30,
                   "two long tasks to run")
        assert abandoned.state == "queued"
        cancelled_queued = m.submit_task(square, (1,))
        assert cancelled_queued.cancel()
        # both processes that were stopped (timeout, cancel) were reported lost and replaced
        wait_until(lambda: ends.lost == 2 and ends.up == 4, 30,
                   f"2 workers lost and replaced (lost {ends.lost}, up {ends.up})")
    finally:
        m.close()
    for task in (queued_first, queued_second, abandoned):
        with pytest.raises(MasterClosedError):
            m.get_result(task)
    expected = {
        done.id: "done", timed.id: "TaskTimeoutError", running.id: "TaskCancelledError",
        cancelled_queued.id: "TaskCancelledError", queued_first.id: "MasterClosedError",
        queued_second.id: "MasterClosedError", abandoned.id: "MasterClosedError",
    }
    time.sleep(0.5)  # a second report (the stopped processes' late words) would land by now
    assert sorted(ends.ends) == sorted(expected.items())


def test_a_task_error_names_this_host_and_its_local_worker():
    # Seen failing before workers described themselves: no note at all.
    import socket

    from pymw_testing import fail

    with Master("local", num_workers=1) as m:
        task = m.submit_task(fail, ("where from?",))
        wait_until(task.done, 60, "the failing task to end")
        with pytest.raises(Exception, match="where from") as caught:
            m.get_result(task)
        (note,) = caught.value.__notes__
        assert f"on host {socket.gethostname()}, worker local/w0 (pid " in note, note
        assert note.endswith("attempt 1 of 3)"), note
