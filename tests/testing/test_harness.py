"""The kit's harness on its own: whatever a check starts, the check takes down, even what
arrives after the check gave up waiting for it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pymw_core.testing import Target
from pymw_core.testing.harness import Run


class SlowStart:
    """An in-process interface whose start takes ``delay`` seconds; says when it is cleaned up."""

    delay = 1.5
    made: list[SlowStart] = []

    def __init__(self) -> None:
        time.sleep(self.delay)
        self.cleaned = threading.Event()
        SlowStart.made.append(self)

    def execute_task(self, task, worker) -> None:  # no task is submitted here
        raise AssertionError("no task was submitted")

    def cleanup(self) -> None:
        self.cleaned.set()


@pytest.fixture
def slow_start():
    SlowStart.made.clear()
    yield SlowStart
    SlowStart.delay = 1.5


def test_a_master_made_after_its_check_gave_up_is_closed_with_the_check(
        tmp_path: Path, slow_start: type[SlowStart]) -> None:
    # A start past the deadline fails the check, but its master still comes, later: a
    # batch or MPI job, whose workers would otherwise run on into the checks after it,
    # taking their CPU and making them late in turn.
    run = Run(Target(slow_start, startup=0.5, per_task=0.5), tmp_path)
    with pytest.raises(pytest.fail.Exception, match="did not happen within 1 s"):
        run.master()
    assert not slow_start.made, "the start ended before its deadline: nothing tested"
    run.close()
    assert len(slow_start.made) == 1 and slow_start.made[0].cleaned.is_set(), (
        "the interface that started late was not cleaned up by the check's close()")
    assert [m.closed for m in run.masters] == [True]


def test_a_start_still_running_when_its_check_ends_fails_saying_so(
        tmp_path: Path, slow_start: type[SlowStart]) -> None:
    slow_start.delay = 3.0
    run = Run(Target(slow_start, startup=0.5, per_task=0.5), tmp_path)
    with pytest.raises(pytest.fail.Exception, match="did not happen within 1 s"):
        run.master()
    with pytest.raises(pytest.fail.Exception,
                       match="the interface was still starting 1 s after its check gave up"):
        run.close()
    for thread in run.late_starts:  # this test's own tidying: the start ends at 3 s
        thread.join(10)
    for master in run.masters:
        master.close()
    assert [m.closed for m in run.masters] == [True]
