"""The attempt model with real worker processes: stops that hit only what they name,
submits that never wait on a busy worker, and workers that cannot start."""

from __future__ import annotations

import os
import time

import pytest
from pymw_testing import wait_until

from pymw_core import InterfaceError, Master, TaskTimeoutError


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
