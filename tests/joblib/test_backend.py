"""The "pymw" joblib backend on the local interface: results, n_jobs, errors, lost workers.

Real worker processes, real joblib; no mocks. This module is the user's code, so its
task functions travel to the workers by value.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
from pymw_testing import Workers, require_module

from pymw_core import Master, RemoteTraceback, WorkerLostError

# CI installs joblib (noxfile TEST_DEPS): there its absence fails; elsewhere it skips.
joblib = require_module("joblib", "the joblib backend's tests need joblib")
Parallel, delayed = joblib.Parallel, joblib.delayed
PyMWBackend = require_module("pymw_core.joblib_backend", "joblib").PyMWBackend
worker_count = require_module("pymw_core.joblib_backend", "joblib").worker_count

DEADLINE = 120.0  # seconds any one Parallel call below may take before the test gives up


# -- tasks -------------------------------------------------------------------------------


def square(x):
    return x * x


def pid_of(_):
    return os.getpid()


def fail_at(x, bad):
    if x == bad:
        raise ValueError(f"bad input {x}")
    return x


def fail_soon():
    time.sleep(0.5)
    raise KeyError("the first task failed")


def sleep_long():
    time.sleep(3600)
    return "slept"


def die_once(marker):
    """Kill this worker process the first time (a lost worker), succeed when re-run."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return "survived", os.getpid()
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def die_always():
    os.kill(os.getpid(), signal.SIGKILL)


def where():
    return os.getpid(), threading.get_ident()


def nested(n_jobs):
    """An inner Parallel inside a task: where do its calls run, and with which backend?"""
    backend, _ = joblib.parallel.get_active_backend()
    inner = Parallel(n_jobs=n_jobs)(delayed(where)() for _ in range(8))
    return os.getpid(), threading.get_ident(), type(backend).__name__, inner


# -- helpers -----------------------------------------------------------------------------


def run_parallel(master, calls, what, deadline=DEADLINE, **parallel_options):
    """``Parallel(**parallel_options)(calls)`` on the "pymw" backend with ``master``, in a
    thread (joblib's configuration is per thread, so it is set there); fail the test
    with ``what`` if the call has not returned within ``deadline`` seconds."""
    outcome = {}

    def run():
        try:
            with joblib.parallel_config(backend="pymw", master=master):
                outcome["value"] = Parallel(**parallel_options)(calls)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        pytest.fail(f"{what} (no return within {deadline:.0f} s)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# -- the name, the options, the master -------------------------------------------------------


def test_the_registered_name_runs_calls_on_the_named_interface_with_its_options():
    with joblib.parallel_config(backend="pymw", interface="local", num_workers=2) as config:
        backend = config["backend"]
        assert isinstance(backend, PyMWBackend)
        results = Parallel()(delayed(square)(i) for i in range(50))
        pids = set(Parallel()(delayed(pid_of)(i) for i in range(20)))
        status = backend.master.get_status()
    assert results == [i * i for i in range(50)]
    assert os.getpid() not in pids and pids <= set(status["task_pids"])
    assert status["interface"] == "local" and status["workers"] == 2
    assert status["finished"] >= 2 and status["failed"] == 0
    backend.close()
    assert backend.master.closed


def test_the_older_parallel_backend_context_works_too(local_master):
    master = local_master()
    with joblib.parallel_backend("pymw", master=master):
        results = Parallel()(delayed(square)(i) for i in range(10))
    assert results == [i * i for i in range(10)]
    assert master.get_status()["finished"] >= 1


def test_an_existing_master_is_used_and_left_open(local_master):
    master = local_master()
    with joblib.parallel_config(backend="pymw", master=master) as config:
        assert config["backend"].master is master
        assert Parallel(n_jobs=2)(delayed(square)(i) for i in range(10)) == [
            i * i for i in range(10)]
        config["backend"].close()  # not ours to close
    assert not master.closed
    assert master.get_status()["finished"] >= 1
    assert master.get_result(master.submit_task(square, (7,)))[1] == 49


def test_a_master_and_interface_options_together_are_refused(local_master):
    with pytest.raises(ValueError, match="either an existing master or an interface"):
        PyMWBackend("local", master=local_master(), num_workers=2)
    with pytest.raises(ValueError, match="workers must be a whole number"):
        PyMWBackend(workers=0)


def test_the_master_is_made_once_and_reused_across_parallel_calls():
    with joblib.parallel_config(backend="pymw", interface="local", num_workers=2) as config:
        first = set(Parallel()(delayed(pid_of)(i) for i in range(20)))
        master = config["backend"].master
        second = set(Parallel()(delayed(pid_of)(i) for i in range(20)))
        assert config["backend"].master is master
    assert first | second <= set(master.get_status()["task_pids"])
    config["backend"].close()


def test_parallel_calls_by_name_share_one_master_and_its_workers():
    # joblib makes a new backend object for each Parallel(backend="pymw") call; before the
    # shared master each call started a master and workers of its own, and a backend of
    # the same settings made afterwards had a fresh master that had run nothing.
    calls = [set(Parallel(n_jobs=2, backend="pymw")(delayed(pid_of)(i) for i in range(20)))
             for _ in range(3)]
    master = PyMWBackend().master  # a backend of the same (default) settings: the same master
    assert master.get_status()["finished"] >= 3  # every call's batches ran on it
    assert set().union(*calls) <= set(master.get_status()["task_pids"])  # on its workers
    master.close()
    after = set(Parallel(n_jobs=2, backend="pymw")(delayed(pid_of)(i) for i in range(20)))
    fresh = PyMWBackend().master
    assert fresh is not master and not fresh.closed  # a closed master is replaced
    assert fresh.get_status()["finished"] >= 1 and not after & set().union(*calls)
    assert after <= set(fresh.get_status()["task_pids"])
    fresh.close()


# -- n_jobs ------------------------------------------------------------------------------------


def test_n_jobs_counts_the_workers_the_interface_reports(local_master):
    master = local_master(num_workers=3)
    assert worker_count(master) == 3
    with joblib.parallel_config(backend="pymw", master=master):
        assert joblib.effective_n_jobs(-1) == 3
        assert joblib.effective_n_jobs(None) == 3  # the backend's default is every worker
        assert joblib.effective_n_jobs(-2) == 2
        assert joblib.effective_n_jobs(-10) == 1
        assert joblib.effective_n_jobs(5) == 5  # as asked: the rest queue on the master
    with joblib.parallel_config(backend="pymw", master=master, n_jobs=-2):
        assert joblib.effective_n_jobs(None) == 2  # None: the n_jobs of the context
    with pytest.raises(ValueError, match="n_jobs == 0"):
        PyMWBackend(master=master).effective_n_jobs(0)


def test_without_a_reported_worker_count_the_workers_option_or_the_cpu_count_is_used():
    master = Master(Workers())  # an in-process interface whose status has no "workers"
    try:
        assert worker_count(master) is None
        with joblib.parallel_config(backend="pymw", master=master):
            assert joblib.effective_n_jobs(-1) == joblib.cpu_count()
        with joblib.parallel_config(backend="pymw", master=master, workers=7):
            assert joblib.effective_n_jobs(-1) == 7
            assert joblib.effective_n_jobs(-3) == 5
            assert Parallel()(delayed(square)(i) for i in range(5)) == [0, 1, 4, 9, 16]
        assert master.get_status()["finished"] >= 1
    finally:
        master.close()


def test_n_jobs_1_runs_in_this_process_like_joblibs_own_backends(local_master):
    master = local_master()
    with joblib.parallel_config(backend="pymw", master=master):
        pids = Parallel(n_jobs=1)(delayed(pid_of)(i) for i in range(5))
    assert set(pids) == {os.getpid()}
    assert master.get_status()["submitted"] == 0


def test_auto_batching_groups_many_short_calls_into_few_tasks(local_master):
    master = local_master()
    calls = 10_000
    with joblib.parallel_config(backend="pymw", master=master):
        results = Parallel(n_jobs=2)(delayed(square)(i) for i in range(calls))
    assert results == [i * i for i in range(calls)]
    submitted = master.get_status()["submitted"]
    assert 1 <= submitted < calls / 4, f"{submitted} tasks for {calls} calls: no batching"


def test_return_as_generator_yields_results_as_they_come(local_master):
    master = local_master()
    with joblib.parallel_config(backend="pymw", master=master):
        gen = Parallel(n_jobs=2, return_as="generator")(delayed(square)(i) for i in range(30))
        assert list(gen) == [i * i for i in range(30)]


# -- failures --------------------------------------------------------------------------------


def test_a_raising_task_raises_its_own_exception_with_the_workers_traceback(local_master):
    master = local_master()
    with pytest.raises(ValueError, match="bad input 13") as caught:
        run_parallel(master, [delayed(fail_at)(i, 13) for i in range(40)],
                     "Parallel did not raise the task's error", n_jobs=2, batch_size=1)
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback) and "fail_at" in cause.tb
    # The backend is still usable after the error.
    with joblib.parallel_config(backend="pymw", master=master):
        assert Parallel(n_jobs=2)(delayed(square)(i) for i in range(5)) == [0, 1, 4, 9, 16]


def test_after_an_error_the_remaining_tasks_are_cancelled_queued_and_running(local_master):
    master = local_master()
    calls = [delayed(fail_soon)()] + [delayed(sleep_long)() for _ in range(12)]
    with pytest.raises(KeyError, match="the first task failed"):
        run_parallel(master, calls, "Parallel did not return after a task raised: the "
                     "hour-long tasks were not cancelled",
                     n_jobs=2, batch_size=1, pre_dispatch="all")
    status = {k: v for k, v in master.get_status().items() if k != "tasks"}
    assert status["queued"] == 0 and status["running"] == 0, status
    assert status["submitted"] == 13 and status["finished"] == 0, status
    assert status["failed"] == 1 and status["cancelled"] == 12, status
    # The worker that ran a cancelled task was stopped and replaced: the master still works.
    assert master.get_result(master.submit_task(square, (9,)))[1] == 81


class Retries:
    """An observer (the master's documented hook) that records retried tasks."""

    def __init__(self):
        self.reasons = []

    def on_task_retried(self, task, reason):
        self.reasons.append(reason)


def test_a_lost_worker_is_replaced_and_its_batch_runs_again(local_master, tmp_path):
    retries = Retries()
    master = local_master(max_attempts=3, observers=[retries])
    marker = str(tmp_path / "died-once")
    results = run_parallel(
        master, [delayed(die_once)(marker)] + [delayed(square)(i) for i in range(10)],
        "Parallel did not finish after a worker was killed", n_jobs=2, batch_size=1)
    assert results[0][0] == "survived" and results[1:] == [i * i for i in range(10)]
    assert os.path.exists(marker)
    status = master.get_status()
    assert status["restarts"] >= 1 and status["failed"] == 0
    assert len(retries.reasons) == 1 and "SIGKILL" in retries.reasons[0], retries.reasons


def test_a_worker_lost_past_the_retry_bound_fails_the_call_with_worker_lost_error(
        local_master):
    master = local_master(max_attempts=2)
    with pytest.raises(WorkerLostError, match="lost its worker"):
        run_parallel(master, [delayed(die_always)()] + [delayed(square)(i) for i in range(4)],
                     "Parallel did not fail after its task killed every worker it met",
                     n_jobs=2, batch_size=1)


# -- nesting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("inner_n_jobs", [4, -1])
def test_nested_parallel_runs_sequentially_on_the_worker(local_master, inner_n_jobs):
    master = local_master()
    outer = run_parallel(master, [delayed(nested)(inner_n_jobs) for _ in range(4)],
                         "the nested Parallel calls did not finish", n_jobs=2, batch_size=1)
    for pid, thread, backend, inner in outer:
        assert pid != os.getpid()
        assert backend == "SequentialBackend"
        assert set(inner) == {(pid, thread)}, "inner calls left the outer task's thread"
    # Only the outer calls became tasks: the inner ones made no task of their own.
    assert master.get_status()["submitted"] == 4


def test_joblibs_own_timeout_raises_and_cancels_the_rest(local_master):
    master = local_master()
    calls = [delayed(square)(2)] + [delayed(sleep_long)() for _ in range(4)]
    with pytest.raises((TimeoutError, multiprocessing.TimeoutError)):  # joblib's is the latter
        run_parallel(master, calls, "Parallel(timeout=1) did not give up on hour-long calls",
                     n_jobs=2, batch_size=1, timeout=1)
    status = master.get_status()
    assert status["queued"] == 0 and status["running"] == 0
    assert status["cancelled"] == 4


def test_backends_sharing_a_master_share_one_watcher_of_it(local_master):
    master = local_master()
    for _ in range(3):
        with joblib.parallel_config(backend="pymw", master=master):
            assert Parallel(n_jobs=2)(delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]
    watchers = [impl.plugin for impl in master.hooks.on_task_done.get_hookimpls()]
    assert len(watchers) == 1, f"one observer per parallel_config block: {watchers}"


# -- what the backend does not support, as docs/joblib.md says ---------------------------------


def test_require_sharedmem_runs_the_calls_in_threads_of_this_process(local_master):
    """docs/joblib.md, "Not supported": joblib falls back to its threading backend.

    Seen failing with ``supports_sharedmem = True`` on PyMWBackend: the calls went to
    the workers as tasks (other pids, nothing appended to ``seen``, 1 task submitted).
    """
    master = local_master()
    seen = []

    def note(x):
        seen.append(x)  # the caller's own list: only shared memory lets this be seen
        return os.getpid(), threading.get_ident()

    places = run_parallel(master, [delayed(note)(i) for i in range(8)],
                          "Parallel(require='sharedmem') did not return",
                          n_jobs=2, require="sharedmem")
    assert sorted(seen) == list(range(8))
    assert {pid for pid, _ in places} == {os.getpid()}
    assert threading.get_ident() not in {thread for _, thread in places}  # joblib's threads
    assert master.get_status()["submitted"] == 0, "calls went to the workers as tasks"


@pytest.mark.parametrize("how", ["by name", "as an instance", "parallel_backend"])
def test_inner_max_num_threads_is_refused_by_joblib(how):
    """docs/joblib.md, "Not supported": no thread limits are set in the workers, and
    joblib refuses the setting (an AssertionError) before any master starts.

    Seen failing with ``supports_inner_max_num_threads = True`` on PyMWBackend: no
    error (the setting was taken and silently not honoured)."""
    makers = {
        "by name": lambda: joblib.parallel_config(
            backend="pymw", interface="local", num_workers=1, inner_max_num_threads=2),
        "as an instance": lambda: joblib.parallel_config(
            backend=PyMWBackend("local", num_workers=1), inner_max_num_threads=2),
        "parallel_backend": lambda: joblib.parallel_backend(
            "pymw", interface="local", num_workers=1, inner_max_num_threads=2),
    }
    with pytest.raises(AssertionError, match="PyMWBackend does not accept setting the "
                                             "inner_max_num_threads argument"):
        with makers[how]():
            pass
