"""One life per task: attempts, late reports, memory, and the edges of the API.

In-process interfaces give exact control over when an attempt is reported; the
worker-process side of the same rules is in tests/local/test_attempts.py.
"""

from __future__ import annotations

import gc
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import cloudpickle
import pytest
from pymw_testing import Held, Inline, running_attempt, wait_until

from pymw_core import (
    InterfaceError,
    InvalidValueError,
    Master,
    MasterClosedError,
    PyMWExecutor,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
    WorkerLostError,
)
from pymw_core.task import Attempt


def inc(x):
    return x + 1


# -- attempts -----------------------------------------------------------------------------


def test_the_interface_gets_an_attempt_that_names_its_task():
    interface = Held()
    with Master(interface) as m:
        task = m.submit_task(inc, (1,))
        attempt = running_attempt(m, task)
        assert interface.tasks == [attempt]
        assert isinstance(attempt, Attempt) and attempt.task is task and attempt.number == 1
        # read-through views of the task for interfaces written against the Task
        assert attempt.name == task.name and attempt.timeout is None and attempt.payload
        attempt.task_finished(None, 2, stdout="out", stderr="err", seconds=0.5)
        assert m.get_result(task) == (task, 2)
        assert (task.stdout, task.stderr, task.get_execution_time()) == ("out", "err", 0.5)
        assert attempt.payload is None  # released once reported


def test_a_late_report_of_an_earlier_attempt_never_settles_the_retry():
    interface = Held()
    with Master(interface, max_attempts=2) as m:
        task = m.submit_task(inc, (1,))
        first = running_attempt(m, task, 1)
        first_worker = first.worker
        first.worker_lost("gone")
        second = running_attempt(m, task, 2)
        assert second.id != first.id
        first.task_finished(None, "stale")  # the first worker's late reply
        assert task.state == "running" and not task.done()
        assert interface.finished_workers == []  # no slot freed on its behalf
        second.task_finished(None, "fresh")
        assert m.get_result(task)[1] == "fresh"
        assert interface.finished_workers == [second.worker]
        assert first_worker in ("w1", "w2") and second.worker != first_worker  # its slot went with it


def test_a_report_after_a_stop_frees_that_attempts_worker_only():
    interface = Held()
    with Master(interface) as m:
        task = m.submit_task(inc, (1,))
        attempt = running_attempt(m, task)
        assert task.cancel()
        assert interface.stopped == [attempt]
        attempt.task_finished(None, "too late")
        with pytest.raises(TaskCancelledError):
            m.get_result(task)
        assert interface.finished_workers == [attempt.worker]
        attempt.task_finished(None, "twice")  # a second report changes nothing
        assert interface.finished_workers == [attempt.worker]


def test_a_timeout_names_the_attempt_that_ran_too_long():
    interface = Held()
    with Master(interface, max_attempts=3) as m:
        task = m.submit_task(inc, (1,), timeout=0.2)
        first = running_attempt(m, task)
        first.worker_lost("gone before its deadline")
        second = running_attempt(m, task, 2)
        with pytest.raises(TaskTimeoutError):
            m.get_result(task)
        assert interface.stopped == [second]


def test_lost_before_it_started_is_not_charged():
    interface = Held()
    with Master(interface, max_attempts=1) as m:
        task = m.submit_task(inc, (1,))
        running_attempt(m, task).worker_lost("queued on a worker that died", started=False)
        running_attempt(m, task, 2).task_finished(None, 5)
        assert m.get_result(task)[1] == 5 and task.attempts == 1


# -- memory -------------------------------------------------------------------------------


def test_a_handed_out_task_is_forgotten_by_the_master():
    interface = Inline()
    with Master(interface) as m:
        task = m.submit_task(inc, (1,))
        m.get_result(task)
        interface.executed.clear()  # the test interface's own record of what it ran
        ref = weakref.ref(task)
        payload_gone = task.payload is None
        gc.disable()  # no reference cycle either: it goes the moment the user drops it
        try:
            del task
            assert ref() is None
        finally:
            gc.enable()
        assert payload_gone
        assert m.get_status()["tasks"] == []


def worker_function_cache_size():
    """How many functions the worker's runtime holds (run as a task, in the worker)."""
    import gc

    # by name: the worker runs as ``-m pymw_core.worker``, so its class is __main__'s
    (runtime,) = [o for o in gc.get_objects() if type(o).__name__ == "Runtime"]
    return len(runtime._functions)


def test_the_function_cache_is_bounded_and_an_evicted_function_ships_again(monkeypatch):
    # Seen failing: with FunctionMirror's and the Runtime's eviction removed (unbounded
    # caches), the worker held 277 functions and functions[0] went without its blob.
    from pymw_core import wire

    shipped: list[tuple[int, bool]] = []
    needs_blob = wire.FunctionMirror.needs_blob

    def recording(self, code):
        fresh = needs_blob(self, code)
        shipped.append((code[1], fresh))
        return fresh

    monkeypatch.setattr(wire.FunctionMirror, "needs_blob", recording)
    with Master("local", num_workers=1) as m:
        functions = [eval(f"lambda: {i}") for i in range(wire.FUNCTION_CACHE + 20)]
        assert [m.get_result(m.submit_task(f))[1] for f in functions] == \
            list(range(len(functions)))
        assert m.get_result(m.submit_task(worker_function_cache_size))[1] == \
            wire.FUNCTION_CACHE, "the worker keeps FUNCTION_CACHE functions, no more"
        # the first ones were evicted on both sides: they travel again and still run
        del shipped[:]
        assert m.get_result(m.submit_task(functions[0]))[1] == 0
        assert [fresh for _, fresh in shipped] == [True], shipped


def test_executor_keywords_reuse_the_functions_pickle():
    def scale(x, k=1):
        return x * k

    with PyMWExecutor(Inline()) as pool:
        first = pool.submit(scale, 2, k=3)
        second = pool.submit(scale, 4, k=5)
        assert (first.result(timeout=30), second.result(timeout=30)) == (6, 20)
        assert pool.master._packer._functions[id(scale)][1][1] == 1  # one function, id 1


# -- what ships -----------------------------------------------------------------------------


class Scale:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return x * self.k


def test_a_callable_object_ships_with_its_current_state():
    s = Scale(1)
    with Master(Inline()) as m:
        assert m.get_result(m.submit_task(s, (2,)))[1] == 2
        s.k = 100
        assert m.get_result(m.submit_task(s, (2,)))[1] == 200


def test_a_function_that_cannot_load_on_the_worker_says_why_every_time(tmp_path):
    module = tmp_path / "vanishing_mod.py"
    module.write_text("def f():\n    return 1\n")
    program = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import cloudpickle, vanishing_mod
        from pymw_core import Master
        # Registered by reference on purpose: the worker cannot import it.
        with Master("local", num_workers=1) as m:
            import pymw_core.payload as payload
            payload.UserCode._is_user = lambda self, name, module: False
            errors = []
            for _ in range(3):
                try:
                    m.get_result(m.submit_task(vanishing_mod.f))
                except Exception as exc:
                    errors.append(type(exc).__name__ + ": " + str(exc))
            print("\\n".join(errors))
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, cwd=str(tmp_path.parent))
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3, done.stdout + done.stderr
    assert all("vanishing_mod" in line and "ModuleNotFoundError" in line for line in lines)
    assert not any("never sent" in line for line in lines)


def test_two_masters_in_two_threads_pickle_user_code_without_interfering(tmp_path):
    module = tmp_path / "own_code_mod.py"
    module.write_text("def triple(x):\n    return 3 * x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import own_code_mod

        cloudpickle.register_pickle_by_value(own_code_mod)  # the program's own choice
        errors: list[BaseException] = []

        def submit_many() -> None:
            try:
                with Master(Inline()) as m:
                    for i in range(300):
                        fn = eval("lambda x: own_code_mod.triple(x)",
                                  {"own_code_mod": own_code_mod})
                        assert m.get_result(m.submit_task(fn, (i,)))[1] == 3 * i
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=submit_many) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert "own_code_mod" in cloudpickle.list_registry_pickle_by_value()
    finally:
        sys.path.remove(str(tmp_path))
        cloudpickle.unregister_pickle_by_value(sys.modules.pop("own_code_mod"))


# -- get_result over a list -----------------------------------------------------------------


def test_get_result_of_a_long_list_follows_the_list_it_is_given():
    with Master(Inline()) as m:
        tasks = [m.submit_task(inc, (i,)) for i in range(300)]
        first_half, second_half = tasks[:150], tasks[150:]
        got = [m.get_result(first_half)[0] for _ in range(150)]
        assert sorted(t.id for t in got) == [t.id for t in first_half]
        with pytest.raises(TaskError, match="already handed out"):
            m.get_result(first_half)
        # an equal list is indexed once; a different one is its own question
        got = {m.get_result(list(second_half))[0].id for _ in range(150)}
        assert got == {t.id for t in second_half}


# -- API edges ------------------------------------------------------------------------------


def test_a_finished_task_stays_readable_after_close():
    m = Master(Held())
    task = m.submit_task(inc, (1,))
    running_attempt(m, task).task_finished(None, 2)
    m.get_result(task)
    waiting = m.submit_task(inc, (2,))
    running_attempt(m, waiting)
    m.close()
    assert m.get_result(task) == (task, 2)  # as a finished future stays readable
    with pytest.raises(MasterClosedError, match="closed before"):
        m.get_result(waiting)
    with pytest.raises(MasterClosedError):
        m.submit_task(inc, (3,))


def test_executor_shutdown_cancels_only_calls_not_yet_started():
    interface = Held(names=("only",))  # it can stop a running task: it must not be asked to
    pool = PyMWExecutor(interface)
    running = pool.submit(inc, 1)
    queued = pool.submit(inc, 2)
    attempt = running_attempt(pool.master, running.task)
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled() and not running.cancelled()
    assert interface.stopped == []
    attempt.task_finished(None, 2)
    pool.master.close()


@pytest.mark.parametrize("setting, value", [("timeout", -1), ("max_attempts", 0)])
def test_bad_settings_are_task_errors_and_value_errors(setting, value):
    with pytest.raises(InvalidValueError) as caught:
        Master(Inline(), **{setting: value})
    assert isinstance(caught.value, TaskError) and isinstance(caught.value, ValueError)
    with Master(Inline()) as m, pytest.raises(TaskError, match=setting):
        m.submit_task(inc, (1,), **{setting: value})


BAD_TIMEOUTS = [float("nan"), -1, -0.5, 0, True, False, "5", [5], complex(1, 0), float("-inf")]


@pytest.mark.parametrize("value", BAD_TIMEOUTS, ids=repr)
def test_a_bad_timeout_is_refused_by_every_call_that_takes_one(value):
    # Seen failing on the old code: NaN passed nowhere, but the message said nothing
    # of inf; these pin every entry point to one InvalidValueError naming the value.
    with pytest.raises(InvalidValueError, match="timeout must be a positive number"):
        Master(Inline(), timeout=value)
    with Master(Inline()) as m:
        with pytest.raises(InvalidValueError, match="timeout"):
            m.submit_task(inc, (1,), timeout=value)
        with pytest.raises(InvalidValueError, match="timeout"):
            list(m.map(inc, [1, 2], timeout=value))
        assert m.get_status()["submitted"] == 0  # nothing was queued by the refused calls
    with pytest.raises(InvalidValueError, match="timeout"):
        PyMWExecutor(Inline(), timeout=value)


@pytest.mark.parametrize("huge", [float("inf"), 1e10, 1e300, 2**70])
def test_a_huge_or_infinite_timeout_leaves_later_timeouts_working(huge):
    # Seen failing on the old code: inf and 1e10 killed the deadline thread with
    # OverflowError (Condition.wait), and the 0.2 s timeout below never fired.
    interface = Held()
    with Master(interface) as m:
        endless = m.submit_task(inc, (1,), timeout=huge)
        running_attempt(m, endless)
        assert endless.timeout is None or endless.timeout == huge
        time.sleep(0.1)  # the deadline thread has taken the huge deadline into its wait
        short = m.submit_task(inc, (2,), timeout=0.2)
        wait_until(short.done, 10, "the 0.2 s timeout after a huge one to fire")
        with pytest.raises(TaskTimeoutError):
            m.get_result(short)
        assert not endless.done()


def test_inf_means_no_timeout_even_where_the_master_has_one():
    interface = Held()
    with Master(interface, timeout=0.2) as m:
        endless = m.submit_task(inc, (1,), timeout=float("inf"))
        limited = m.submit_task(inc, (2,))
        assert endless.timeout is None and limited.timeout == 0.2
    with Master(Inline(), timeout=float("inf")) as m:
        assert m.timeout is None


def test_an_expiry_that_raises_does_not_end_the_deadline_thread(caplog):
    # Seen failing with the old loop: the first exception ended the thread and the
    # second deadline never fired.
    from pymw_core.deadlines import Deadlines

    fired = []

    def expire(attempt):
        fired.append(attempt)
        if len(fired) == 1:
            raise RuntimeError("an observer broke")

    class Running:
        current = True
        started_at = time.time()

    deadlines = Deadlines(expire)
    first, second = Running(), Running()
    deadlines.add(first, 0.05)
    deadlines.add(second, 0.1)
    try:
        wait_until(lambda: len(fired) == 2, 10, "the second deadline to fire after the first raised")
    finally:
        deadlines.stop()
    assert "later timeouts still are" in caplog.text


def test_a_failing_master_cleans_up_its_interface():
    class WrongObserver:
        def on_task_done(self, not_a_hook_argument):
            pass

    interface = Inline()
    with pytest.raises(Exception, match="cannot be used"):
        Master(interface, observers=[WrongObserver()])
    assert interface.cleanups == 1


def test_sigterm_closes_masters_then_calls_the_programs_own_handler(tmp_path):
    program = textwrap.dedent("""
        import os, signal, sys, time
        seen = []
        signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
        from pymw_core import Master
        m = Master("local", num_workers=1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        print(seen, m.closed)
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == [f"[{int(signal.SIGTERM)}]", "True"], done.stderr


# -- stress: every task ends exactly once ---------------------------------------------------


class Counting:
    def __init__(self):
        self.ends: dict[int, int] = {}
        self.lock = threading.Lock()

    def _end(self, task):
        with self.lock:
            self.ends[task.id] = self.ends.get(task.id, 0) + 1

    def on_task_done(self, task):
        self._end(task)

    def on_task_failed(self, task, error):
        self._end(task)


class Jittery(Inline):
    """Runs tasks on a few threads, sometimes losing the worker, in random order."""

    def __init__(self):
        super().__init__()
        self.stopped = 0

    blocking_execute = True

    def execute_task(self, task, worker):
        time.sleep(random.random() * 0.003)
        if random.random() < 0.05:
            task.worker_lost("jitter", started=random.random() < 0.5)
            return
        super().execute_task(task, worker)

    def stop_task(self, task, worker):
        self.stopped += 1


def test_threads_submitting_claiming_cancelling_and_timing_out_end_each_task_once():
    counting = Counting()
    deadline = time.monotonic() + 4
    submitted: list = []
    claimed: dict[int, object] = {}
    problems: list[str] = []
    lock = threading.Lock()

    with Master(Jittery(), observers=[counting], max_attempts=50, max_in_flight=8) as m:
        def submitter() -> None:
            while time.monotonic() < deadline:
                value = random.randrange(1000)
                kind = random.random()
                task = m.submit_task(inc, (value,), timeout=0.001 if kind < 0.05 else None)
                with lock:
                    submitted.append((task, value))
                if kind > 0.95:
                    task.cancel()

        def claimer() -> None:
            while time.monotonic() < deadline + 1:
                try:
                    task, result = m.get_result(blocking=False)
                except TaskError as exc:  # cancelled, timed out, lost: its own error
                    task = getattr(exc, "task", None)
                    continue
                if task is None:
                    time.sleep(0.001)
                    continue
                with lock:
                    if task.id in claimed:
                        problems.append(f"{task} handed out twice")
                    claimed[task.id] = result

        threads = [threading.Thread(target=submitter) for _ in range(3)]
        threads += [threading.Thread(target=claimer) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(t.is_alive() for t in threads), "a stress thread did not finish"
        for task, _ in submitted:
            wait_until(task.done, 10, f"{task} to end")

    assert not problems, problems[:5]
    assert len(submitted) > 100
    for task, value in submitted:
        assert counting.ends.get(task.id) == 1, (task, counting.ends.get(task.id))
        if task.state == "finished":
            assert m.get_result(task)[1] == value + 1
        if task.id in claimed:
            assert claimed[task.id] == value + 1


# -- workers that vanish: concurrently, before the start, after the end of all workers --------


class Reaped(Inline):
    """Runs each attempt on a dispatch thread after a short wait, during which a reaper
    thread of the test may report its worker lost (as a connection's reader would)."""

    blocking_execute = True

    def __init__(self):
        super().__init__()
        self.waiting: list = []
        self.cond = threading.Condition()

    def execute_task(self, task, worker):
        with self.cond:
            self.waiting.append(task)
            self.cond.notify_all()
        time.sleep(random.random() * 0.004)
        super().execute_task(task, worker)  # a report on a lost attempt changes nothing


def test_losses_reported_from_another_thread_while_attempts_run_end_each_task_once():
    counting = Counting()
    interface = Reaped()
    stop = threading.Event()
    losses = {"started": 0, "not started": 0}

    def reaper():
        while not stop.is_set():
            with interface.cond:
                interface.cond.wait(0.05)
                victims = [a for a in interface.waiting if random.random() < 0.2]
                interface.waiting.clear()
            for attempt in victims:
                started = random.random() < 0.5
                attempt.worker_lost("reaped", started=started)
                losses["started" if started else "not started"] += 1

    thread = threading.Thread(target=reaper)
    thread.start()
    try:
        with Master(interface, observers=[counting], max_attempts=100, max_in_flight=16) as m:
            tasks = [m.submit_task(inc, (i,)) for i in range(400)]
            assert [m.get_result(t)[1] for t in tasks] == [i + 1 for i in range(400)]
    finally:
        stop.set()
        thread.join(10)
    assert losses["started"] > 5 and losses["not started"] > 5, losses
    assert all(counting.ends.get(t.id) == 1 for t in tasks)
    # only losses of a started run are charged: the attempts add up
    assert sum(t.attempts for t in tasks) <= 400 + losses["started"]
    assert any(t.attempts > 1 for t in tasks)


def test_a_worker_lost_after_workers_exhausted_fails_its_task_with_the_reason():
    interface = Held(names=("w1",))
    with Master(interface, max_attempts=5) as m:
        running = m.submit_task(inc, (1,))
        attempt = running_attempt(m, running)
        queued = m.submit_task(inc, (2,))  # no free worker: it waits in the queue
        m.workers_exhausted("the cluster went away for good")
        with pytest.raises(InterfaceError, match="went away for good"):
            m.get_result(queued)
        assert running.state == "running"  # a running attempt may still report
        attempt.worker_lost("its worker went with the cluster")
        with pytest.raises(InterfaceError, match="went away for good"):
            m.get_result(running)  # not retried: no worker will come
        assert running.attempts == 1
        with pytest.raises(InterfaceError, match="went away for good"):
            m.get_result(m.submit_task(inc, (3,)))
        m.workers_changed()  # workers came back after all: submissions queue again
        later = m.submit_task(inc, (4,))
        with interface.lock:
            interface.free.append("w1")
        m.workers_changed()
        running_attempt(m, later).task_finished(None, 5)
        assert m.get_result(later)[1] == 5


def test_observers_hear_of_workers_going_up_and_down():
    events = []

    class Announcing(Inline):
        def attach_master(self, master):
            self.master = master
            master.worker_up("w1")

    class Watcher:
        def on_worker_up(self, worker):
            events.append(("up", worker))

        def on_worker_lost(self, worker, reason):
            events.append(("lost", worker, reason))

    interface = Announcing()
    with Master(interface, observers=[Watcher()]) as m:
        interface.master.worker_down("w1", "its host rebooted")
        interface.master.worker_up("w2")
        assert m.get_result(m.submit_task(inc, (1,)))[1] == 2
    assert events == [("up", "w1"), ("lost", "w1", "its host rebooted"), ("up", "w2")]


def test_each_task_ends_once_through_cancel_timeout_close_and_late_reports():
    counting = Counting()
    ends = []
    counting_failed = counting.on_task_failed

    def failed(task, error):
        ends.append((task.id, type(error).__name__))
        counting_failed(task, error)

    counting.on_task_failed = failed
    interface = Held(names=("w1", "w2", "w3", "w4"))
    m = Master(interface, observers=[counting])
    done = m.submit_task(inc, (1,))
    running_attempt(m, done).task_finished(None, 2)
    cancelled = m.submit_task(inc, (2,))
    cancelled_attempt = running_attempt(m, cancelled)
    assert cancelled.cancel()
    timed = m.submit_task(inc, (3,), timeout=0.1)
    timed_attempt = running_attempt(m, timed)
    with pytest.raises(TaskTimeoutError):
        m.get_result(timed)
    abandoned = m.submit_task(inc, (4,))
    abandoned_attempt = running_attempt(m, abandoned)
    m.close()
    for attempt in (cancelled_attempt, timed_attempt, abandoned_attempt):  # late words
        attempt.task_finished(None, "late")
        attempt.worker_lost("late loss")
    assert {t.id: counting.ends.get(t.id) for t in (done, cancelled, timed, abandoned)} == \
        {done.id: 1, cancelled.id: 1, timed.id: 1, abandoned.id: 1}
    assert sorted(ends) == sorted([(cancelled.id, "TaskCancelledError"),
                                   (timed.id, "TaskTimeoutError"),
                                   (abandoned.id, "MasterClosedError")])


def test_a_worker_reported_down_after_workers_exhausted_does_not_revive_the_master():
    interface = Held(names=())
    with Master(interface) as m:
        m.workers_exhausted("no worker will ever come")
        m.worker_down("w1", "the last one went too")  # another thread's late report
        task = m.submit_task(inc, (1,))
        wait_until(task.done, 2, "the task submitted after workers_exhausted to fail")
        assert isinstance(task.exception(), InterfaceError)


# -- where a task error came from ------------------------------------------------------------


class Node:
    """A worker that describes itself (str and host_name), as interfaces' workers may."""

    host_name = "node7"

    def __init__(self, name):
        self.name = name

    def __str__(self):
        return f"node7/{self.name}"


def test_every_task_error_names_host_worker_and_attempt():
    # Seen failing before Attempt.where: the notes were absent and the messages named
    # only the task.
    interface = Held(names=(Node("w1"), Node("w2"), Node("w3")))  # lost ones never return
    with Master(interface, max_attempts=2) as m:
        raised = m.submit_task(inc, (1,))
        running_attempt(m, raised).task_finished(KeyError("k"))
        with pytest.raises(KeyError) as caught:
            m.get_result(raised)
        assert caught.value.__notes__ == [
            "(PyMW: the task raised this on host node7, worker node7/w1, attempt 1 of 2)"]

        lost = m.submit_task(inc, (2,))
        running_attempt(m, lost).worker_lost("gone")
        running_attempt(m, lost, 2).worker_lost("gone again")
        with pytest.raises(WorkerLostError, match=r"gone again \(on host node7, worker "
                                                  r"node7/w\d, attempt 2 of 2\)"):
            m.get_result(lost)

        slow = m.submit_task(inc, (3,), timeout=0.1)
        attempt = running_attempt(m, slow)
        attempt.ran_on(host="batchnode", worker="job 12.0")
        wait_until(slow.done, 10, "the 0.1 s timeout")
        with pytest.raises(TaskTimeoutError, match=r"on host batchnode, worker job 12.0, "
                                                   r"attempt 1 of 2"):
            m.get_result(slow)


def test_a_worker_that_says_nothing_of_itself_is_named_by_its_class():
    class Anonymous:
        pass

    interface = Held(names=(Anonymous(),))
    with Master(interface) as m:
        task = m.submit_task(inc, (1,))
        running_attempt(m, task).task_finished(ValueError("v"))
        with pytest.raises(ValueError) as caught:
            m.get_result(task)
        assert caught.value.__notes__ == [
            "(PyMW: the task raised this on worker Anonymous, attempt 1 of 3)"]
