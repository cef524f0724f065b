"""The interface contract: required and optional hooks, and what happens when they fail."""

from __future__ import annotations

import pytest
from pymw_testing import Inline

from pymw_core import InterfaceError, Master, hookimpl


def double(x):
    return 2 * x


class OnlyExecute:
    """The smallest complete interface: one method, no PyMW import."""

    def execute_task(self, task, worker):
        task.task_finished(None, ("ran", worker, task.input_data))


def test_a_plain_class_with_only_execute_task_is_a_complete_interface():
    with Master(OnlyExecute()) as m:
        task = m.submit_task(double, (4,))
        assert m.get_result(task) == (task, ("ran", None, (4,)))
        assert m.get_status()["finished"] == 1


def test_hookimpl_marker_is_accepted():
    class Marked:
        @hookimpl
        def execute_task(self, task, worker):
            task.task_finished(None, "marked")

    with Master(Marked()) as m:
        assert m.get_result(m.submit_task(double, (1,)))[1] == "marked"


def test_interface_without_execute_task_is_refused():
    class NoExecute:
        def get_status(self):
            return {}

    with pytest.raises(InterfaceError, match="no execute_task"):
        Master(NoExecute())


def test_hook_with_wrong_argument_names_is_refused():
    class WrongNames:
        def execute_task(self, job, host):
            pass

    with pytest.raises(InterfaceError, match="cannot be used"):
        Master(WrongNames())


class WorkersRaise(Inline):
    def get_available_workers(self):
        raise RuntimeError("no list today")


class WorkersGarbage(Inline):
    def get_available_workers(self):
        return "not a list"


@pytest.mark.parametrize("interface_class", [WorkersRaise, WorkersGarbage])
def test_broken_get_available_workers_means_none_for_every_worker(interface_class):
    interface = interface_class()
    with Master(interface) as m:
        tasks = [m.submit_task(double, (i,)) for i in range(3)]
        assert [m.get_result(t)[1] for t in tasks] == [0, 2, 4]
    assert [worker for _, worker in interface.executed] == [None, None, None]


class ReserveAndFinishRaise(Inline):
    def get_available_workers(self):
        return ["only"]

    def reserve_worker(self, worker):
        raise RuntimeError("reserve broke")

    def worker_finished(self, worker):
        raise RuntimeError("finish broke")


def test_reserve_and_worker_finished_errors_are_ignored():
    with Master(ReserveAndFinishRaise()) as m:
        tasks = [m.submit_task(double, (i,)) for i in range(3)]
        assert [m.get_result(t)[1] for t in tasks] == [0, 2, 4]


class StatusRaises(Inline):
    def get_status(self):
        raise RuntimeError("status broke")


class StatusNotDict(Inline):
    def get_status(self):
        return ["not", "a", "dict"]


@pytest.mark.parametrize("interface_class", [StatusRaises, StatusNotDict])
def test_broken_get_status_counts_as_empty(interface_class):
    with Master(interface_class()) as m:
        m.get_result(m.submit_task(double, (1,)))
        status = m.get_status()
    assert status["finished"] == 1
    # The interface's part is empty, flagged as PyMW 0.4 did.
    assert set(status) == {
        "interface", "submitted", "queued", "running", "finished", "failed", "cancelled", "tasks",
        "interface_status",
    }
    assert status["interface_status"] == "error"


def test_cleanup_raising_never_escapes_close(caplog):
    class CleanupRaises(Inline):
        def cleanup(self):
            super().cleanup()
            raise RuntimeError("cleanup broke")

    interface = CleanupRaises()
    m = Master(interface)
    m.close()
    assert interface.cleanups == 1 and m.closed
    assert "cleanup failed" in caplog.text


class ExecuteRaises:
    def execute_task(self, task, worker):
        raise ConnectionError(f"cannot reach the worker for {task}")


def test_execute_task_raising_marks_the_task_erroneous():
    with Master(ExecuteRaises()) as m:
        task = m.submit_task(double, (1,))
        with pytest.raises(ConnectionError, match="cannot reach the worker"):
            m.get_result(task)
        assert task.state == "failed"
        assert m.get_status()["failed"] == 1


class Flaky(Inline):
    """Loses the worker for the first ``losses`` attempts of every task."""

    def __init__(self, losses):
        super().__init__()
        self.losses = losses
        self.seen = {}

    def execute_task(self, task, worker):
        count = self.seen[task.task.id] = self.seen.get(task.task.id, 0) + 1
        if count <= self.losses:
            task.worker_lost(f"simulated loss {count}")
        else:
            super().execute_task(task, worker)


def test_lost_worker_is_retried_up_to_the_bound():
    with Master(Flaky(losses=2), max_attempts=3) as m:
        task = m.submit_task(double, (21,))
        assert m.get_result(task)[1] == 42
        assert task.attempts == 3


def test_lost_worker_past_the_bound_says_so():
    from pymw_core import WorkerLostError

    with Master(Flaky(losses=5), max_attempts=2) as m:
        task = m.submit_task(double, (1,))
        with pytest.raises(WorkerLostError, match=r"lost its worker 2 times.*simulated loss 2"):
            m.get_result(task)


def test_per_task_max_attempts_overrides_the_master():
    with Master(Flaky(losses=1), max_attempts=1) as m:
        lucky = m.submit_task(double, (2,), max_attempts=2)
        assert m.get_result(lucky)[1] == 4


def test_a_task_that_raises_is_never_rerun():
    interface = Inline()

    def fails():
        raise ValueError("once")

    with Master(interface, max_attempts=5) as m:
        task = m.submit_task(fails)
        with pytest.raises(ValueError):
            m.get_result(task)
    assert len(interface.executed) == 1


class Exhausted:
    def __init__(self):
        self.master = None

    def attach_master(self, master):
        self.master = master

    def get_available_workers(self):
        return []

    def execute_task(self, task, worker):
        raise AssertionError("no worker should ever be matched")


def test_workers_exhausted_fails_queued_tasks_instead_of_waiting_forever():
    interface = Exhausted()
    with Master(interface) as m:
        task = m.submit_task(double, (1,))
        interface.master.workers_exhausted("every host is gone")
        with pytest.raises(InterfaceError, match="every host is gone"):
            m.get_result(task)
        later = m.submit_task(double, (2,))
        with pytest.raises(InterfaceError, match="every host is gone"):
            m.get_result(later)


def test_options_beside_an_instance_are_an_error():
    with pytest.raises(InterfaceError, match="beside an interface instance"):
        Master(Inline(), num_workers=3)


@pytest.mark.parametrize("setting,value", [("max_attempts", 0), ("max_in_flight", "many")])
def test_bad_master_settings_are_refused(setting, value):
    with pytest.raises(ValueError, match=setting):
        Master(Inline(), **{setting: value})
