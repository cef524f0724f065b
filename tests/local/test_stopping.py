"""Timeouts and cancellation of running tasks on real processes: the worker is replaced."""

from __future__ import annotations

import os
import time

import pytest

from pymw_core import Master, TaskCancelledError, TaskTimeoutError


def sleepy_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def test_a_task_past_its_timeout_is_stopped_and_its_worker_replaced():
    with Master("local", num_workers=1) as m:
        before = m.get_status()["pids"]
        slow = m.submit_task(sleepy_pid, (60,), timeout=0.5)
        behind = [m.submit_task(sleepy_pid, (0,)) for _ in range(3)]
        started = time.monotonic()
        with pytest.raises(TaskTimeoutError):
            m.get_result(slow)
        assert time.monotonic() - started < 10
        results = {m.get_result(t)[1] for t in behind}
        assert before[0] not in results  # a fresh process ran them
        assert all(t.attempts == 1 for t in behind)


def test_timeout_counts_from_the_real_start_not_the_wait_behind_another():
    with Master("local", num_workers=1, prefetch=1) as m:
        first = m.submit_task(sleepy_pid, (1.0,))
        second = m.submit_task(sleepy_pid, (0.1,), timeout=0.8)
        assert m.get_result(second)[1] == m.get_result(first)[1]


def test_cancel_a_running_task():
    with Master("local", num_workers=1) as m:
        task = m.submit_task(sleepy_pid, (60,))
        deadline = time.time() + 10
        while task.state != "running" and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert task.cancel() is True
        with pytest.raises(TaskCancelledError):
            m.get_result(task)
        assert m.get_result(m.submit_task(sleepy_pid, (0,)))[1] != 0
