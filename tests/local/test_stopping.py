"""Timeouts and cancellation on real processes: a running task's worker is replaced,
a task that waits on a worker behind another is dropped there without running."""

from __future__ import annotations

import os
import time

import pytest
from pymw_testing import alive, file_text, wait_dead, wait_until

from pymw_core import Master, TaskCancelledError, TaskTimeoutError


def sleepy_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def mark_and_sleep(path, seconds):
    """Write this process's pid to ``path`` (the test's sign that the run began), then sleep."""
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def hold_until(started, release):
    """Write this process's pid to ``started``, then wait (at most a minute) for ``release``."""
    with open(started, "w") as fh:
        fh.write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


def test_a_task_past_its_timeout_is_stopped_and_its_worker_replaced():
    with Master("local", num_workers=1) as m:
        before = m.get_status()["pids"]
        slow = m.submit_task(sleepy_pid, (60,), timeout=0.5)
        behind = [m.submit_task(sleepy_pid, (0,)) for _ in range(3)]
        with pytest.raises(TaskTimeoutError):
            m.get_result(slow)
        results = {m.get_result(t)[1] for t in behind}
        assert before[0] not in results  # a fresh process ran them
        assert all(t.attempts == 1 for t in behind)
        wait_dead(before, 10, "the process that ran the timed-out task")


def test_timeout_counts_from_the_real_start_not_the_wait_behind_another():
    with Master("local", num_workers=1, prefetch=1) as m:
        first = m.submit_task(sleepy_pid, (1.0,))
        second = m.submit_task(sleepy_pid, (0.1,), timeout=0.8)
        assert m.get_result(second)[1] == m.get_result(first)[1]


def test_cancel_a_running_task(tmp_path):
    marker = tmp_path / "started"
    with Master("local", num_workers=1) as m:
        task = m.submit_task(mark_and_sleep, (str(marker), 60))
        victim = int(file_text(marker, 30, "the task to start on its worker"))
        assert task.cancel() is True
        with pytest.raises(TaskCancelledError):
            m.get_result(task)
        wait_dead([victim], 10, "the process running the cancelled task")
        after = m.get_result(m.submit_task(sleepy_pid, (0,)))[1]
        assert after != victim and alive(after)
        assert m.get_status()["restarts"] == 1


def test_a_task_cancelled_while_prefetched_behind_another_is_dropped_unrun(tmp_path):
    """The attempt model: a cancel names the attempt; the worker drops it from its queue
    (a ``dropped`` frame) instead of running it, and the process itself lives on."""
    started, release, never = tmp_path / "started", tmp_path / "release", tmp_path / "never"
    with Master("local", num_workers=1, prefetch=1) as m:
        first = m.submit_task(hold_until, (str(started), str(release)))
        behind = m.submit_task(mark_and_sleep, (str(never), 0))
        runner = int(file_text(started, 30, "the first task to start"))
        wait_until(lambda: behind.state == "running", 10,
                   "the second task to be handed to the busy process")
        assert behind.cancel() is True
        with pytest.raises(TaskCancelledError):
            m.get_result(behind)
        release.touch()  # only now may the process take the next frame
        assert m.get_result(first)[1] == runner
        # the same process runs the next task: it was never stopped or replaced
        assert m.get_result(m.submit_task(sleepy_pid, (0,)))[1] == runner
        assert m.get_status()["restarts"] == 0
    assert not never.exists(), "the cancelled task ran"
