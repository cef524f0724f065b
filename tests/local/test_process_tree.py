"""A task is what its processes do (issue 20): the processes a task starts, however
they fork, end with it: when it ends, times out, is cancelled, when the master
closes or dies. Every pid checked here was written by the task itself.

Seen failing on the code before the guardian (commit 50d3ddd): each test below timed
out in wait_dead naming the `sleep` processes still running (the children were killed
by nobody); the GIL test saw the worker live on past its 20 s deadline; the fork-pool
test waited 60 s for the replacement (the pool held the worker's pipe).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest
from pymw_testing import (
    alive,
    clean_env,
    read_line,
    start_process_tree,
    tree_pids,
    wait_dead,
    wait_until,
)

from pymw_core import Master, TaskCancelledError, TaskTimeoutError


def leave_running(path):
    return start_process_tree(path, 0)


def test_processes_a_task_leaves_running_end_when_it_ends(tmp_path):
    path = tmp_path / "pids"
    with Master("local", num_workers=1) as m:
        pids = m.get_result(m.submit_task(leave_running, (str(path),)))[1]
        wait_dead(pids, 10, "the processes the finished task left running")
        assert m.get_status()["restarts"] == 0  # the worker itself lives on


def test_a_timeout_ends_the_tasks_process_tree(tmp_path):
    path = tmp_path / "pids"
    with Master("local", num_workers=1) as m:
        task = m.submit_task(start_process_tree, (str(path), 300), timeout=1)
        pids = tree_pids(path)
        with pytest.raises(TaskTimeoutError):
            m.get_result(task)
        wait_dead(pids, 10, "the timed-out task's child and double-forked grandchild")


def test_a_cancel_ends_the_tasks_process_tree(tmp_path):
    path = tmp_path / "pids"
    with Master("local", num_workers=1) as m:
        task = m.submit_task(start_process_tree, (str(path), 300))
        pids = tree_pids(path)
        assert task.cancel()
        with pytest.raises(TaskCancelledError):
            m.get_result(task)
        wait_dead(pids, 10, "the cancelled task's child and double-forked grandchild")


def test_close_ends_the_tasks_process_tree(tmp_path):
    path = tmp_path / "pids"
    m = Master("local", num_workers=1)
    m.submit_task(start_process_tree, (str(path), 300))
    pids = tree_pids(path)
    workers = m.get_status()["pids"]
    closing = threading.Thread(target=m.close, name="test-close", daemon=True)
    closing.start()
    closing.join(10)
    assert not closing.is_alive(), "close() did not return within 10 s"
    wait_dead(pids + workers, 10, "the running task's processes and its worker after close()")


def start_fork_pool_then_sleep(path):
    """A multiprocessing fork pool, busy: its processes inherit the worker's pipes."""
    import multiprocessing
    import time

    pool = multiprocessing.get_context("fork").Pool(2)
    with open(f"{path}.part", "w") as fh:
        fh.write(" ".join(str(p.pid) for p in pool._pool))
    os.replace(f"{path}.part", path)
    pool.map(time.sleep, [60, 60], chunksize=1)


def test_a_fork_pool_left_by_a_timed_out_task_does_not_hold_up_its_worker(tmp_path):
    path = tmp_path / "pool"
    m = Master("local", num_workers=1)
    try:
        task = m.submit_task(start_fork_pool_then_sleep, (str(path),), timeout=1)
        pool = tree_pids(path)
        with pytest.raises(TaskTimeoutError):
            m.get_result(task)
        after = m.submit_task(os.getpid)
        # Before the guardian the pool held the worker's stdout: the master saw it
        # dead only when the pool went (never), so `after` waited for ever.
        wait_until(lambda: after.state == "finished", 20, "the next task on the replacement")
        wait_dead(pool, 10, "the timed-out task's pool processes")
    finally:
        closing = threading.Thread(target=m.close, name="test-close", daemon=True)
        closing.start()
        closing.join(10)
    assert not closing.is_alive(), "close() did not return within 10 s"


_MASTER = r"""
import sys
from pymw_core import Master
from pymw_testing import hold_the_gil

m = Master("local", num_workers=1)
m.submit_task(hold_the_gil, (sys.argv[1],))
print(" ".join(map(str, m.get_status()["pids"])), flush=True)
sys.stdin.read()
"""


def test_workers_leave_when_the_master_is_killed_while_a_task_holds_the_gil(tmp_path):
    """The worker's only thread that could watch is stuck behind the GIL; its guardian
    (a process of its own) sees the master's end of the pipe close and ends the tree."""
    path = tmp_path / "pids"
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    master = subprocess.Popen(
        [sys.executable, "-c", _MASTER, str(path)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, env=clean_env(PYTHONPATH=tests))
    try:
        guardians = [int(p) for p in read_line(master.stdout, 60, "the master's worker").split()]
        pids = tree_pids(path)
        workers = [int(p) for g in guardians for p in _children(g)]
        assert workers and all(alive(p) for p in pids + workers)
        master.send_signal(signal.SIGKILL)
        master.wait(30)
        wait_dead(guardians + workers + pids, 20,
                  "the dead master's worker (holding the GIL), its guardian and its processes")
    finally:
        master.kill()
        master.wait(30)
        master.stdout.close()
        master.stdin.close()


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return fh.read().split()


_QUICK_WORKER = """
import os, sys, time
from pymw_core import guardian

real_dup2 = os.dup2

def slow_dup2(*args):  # the guardian's first step: a loaded machine delays it
    time.sleep(1.0)
    return real_dup2(*args)

os.dup2 = slow_dup2
if guardian.start(lambda: None, watch_stdin=False):
    os._exit(7)  # the worker: done before the guardian listens for SIGCHLD
"""


def test_a_worker_that_ends_before_its_guardian_listens_is_still_seen(tmp_path):
    """Its SIGCHLD came before the guardian's handler (discarded): the guardian looks
    anyway and exits with the worker's status. Seen failing before the fix (a guardian
    that waited only for SIGCHLD): this child never ended, the wait below timed out."""
    proc = subprocess.Popen([sys.executable, "-c", _QUICK_WORKER], env=clean_env(),
                            start_new_session=True)
    try:
        assert proc.wait(30) == 7
    except subprocess.TimeoutExpired:
        pytest.fail("the guardian did not see its worker end (a SIGCHLD before its handler)")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
