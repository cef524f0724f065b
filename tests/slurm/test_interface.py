"""The slurm interface against a real Slurm controller and node on 127.0.0.1 (no mocks).

The session's cluster (conftest.py, cluster.py) has MaxArraySize=5, MinJobAge=30 and
KillWait=2, so array splitting is seen with a dozen tasks and a job past its
walltime dies soon after Slurm notices (Slurm checks time limits every 30 s).
"""

from __future__ import annotations

import contextlib
import glob
import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
from pymw_testing import (
    WRITTEN_STDERR,
    WRITTEN_STDOUT,
    exit_abruptly,
    fail,
    file_text,
    last_words_then_exit,
    processes_marked,
    read_data,
    read_line,
    sleep_for,
    square_and_say,
    start_process_tree,
    wait_dead,
    wait_until,
    write_every_way,
)

from pymw_core import (
    InterfaceError,
    Master,
    RemoteTraceback,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
    WorkerLostError,
)

# A batch system on a loaded machine may keep a job pending for minutes: a wait on the
# master fails after 180 s here, not the default 60 s (tests/pymw_testing.py).
pytestmark = [pytest.mark.slurm, pytest.mark.wait_limit(180)]


# -- tasks (shipped by value: this module is the user's code) ------------------------------


def sleep_unless_marked(marker):
    """First attempt: leave a marker and sleep (to be killed); a retry returns at once."""
    import os
    import time

    if os.path.exists(marker):
        return "retried"
    with open(marker, "w"):
        pass
    time.sleep(120)
    return "first attempt"


def wait_for_file(path):
    """Return once ``path`` exists (the test makes it): a task held running at will."""
    import os
    import time

    deadline = time.monotonic() + 150
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "never released"
        time.sleep(0.05)
    return "released"


# -- helpers -------------------------------------------------------------------------------


def run_jobs(cluster, master_or_run):
    """``{element: state}`` of a run's jobs still in Slurm's queue."""
    run = master_or_run if isinstance(master_or_run, str) else master_or_run.interface.run_id
    out = cluster.command("squeue", "-h", "-r", f"--name=pymw-{run}", "-o", "%i|%T")
    assert out.returncode == 0, out.stderr
    return dict(line.split("|") for line in out.stdout.split())


class Retries:
    """An observer that records why tasks were retried."""

    def __init__(self):
        self.reasons = []

    def on_task_retried(self, task, reason):
        self.reasons.append(reason)


# -- results -------------------------------------------------------------------------------


def test_a_batch_larger_than_max_array_size_is_split_and_runs(make_master, slurm_cluster):
    master = make_master()
    tasks = [master.submit_task(square_and_say, (i,)) for i in range(12)]
    assert [master.get_result(t)[1] for t in tasks] == [i * i for i in range(12)]
    assert [t.stdout for t in tasks] == [f"hello {i}\n" for i in range(12)]
    sizes = [size for _, size in master.interface.arrays]
    assert max(sizes) <= slurm_cluster.max_array_size, sizes
    # Split: more than one array (MaxArraySize 5 < 12 tasks), not one array of them all.
    assert len(sizes) > 1, sizes
    assert sum(sizes) <= 12, sizes  # never more elements than tasks
    # Elements run many tasks each: far fewer jobs ran than tasks.
    ran_in = {master.interface.job_id(t) for t in tasks}
    assert len(ran_in) < 12, ran_in
    # Surplus pending elements are cancelled once nothing is queued.
    wait_until(lambda: "PENDING" not in run_jobs(slurm_cluster, master).values(), 40,
             "the surplus pending elements to be cancelled")


def test_output_through_a_batch_job_is_what_fds_1_and_2_got(make_master):
    """Seen failing before fd-level capture: sys.stdout.buffer raised AttributeError."""
    master = make_master()
    task = master.submit_task(write_every_way)
    assert master.get_result(task)[1] == "written"
    assert (task.stdout, task.stderr) == (WRITTEN_STDOUT, WRITTEN_STDERR)


def test_processes_a_task_leaves_running_in_its_job_end_with_it(make_master):
    """The child and the double-forked, setsid grandchild end when the task does, inside
    the job, whatever the batch system tracks."""
    master = make_master()
    pids = master.get_result(master.submit_task(start_process_tree, ("pids",)))[1]  # in its cwd
    wait_dead(pids, 10, "the processes the task left running in its slurm job")


def test_a_task_that_raises_keeps_its_type_traceback_and_stderr(make_master):
    master = make_master()
    task = master.submit_task(fail, ("no such thing",))
    with pytest.raises(LookupError, match="no such thing") as caught:
        master.get_result(task)
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in fail" in cause.tb and "LookupError" in cause.tb
    assert task.stderr == "about to fail\n"
    assert task.attempts == 1  # a task's own exception is never retried


def test_data_files_travel_through_the_run_directory(make_master, tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("payload through the shared run directory")
    master = make_master()
    task = master.submit_task(read_data, ("input.txt",), data_files=[str(path)])
    assert master.get_result(task)[1] == "payload through the shared run directory"


def test_a_task_process_that_dies_is_a_lost_worker_and_its_element_goes_on(make_master):
    master = make_master(max_attempts=1, max_jobs=1)
    dead = master.submit_task(exit_abruptly, (3,))
    with pytest.raises(WorkerLostError, match="exited with status 3 without a result"):
        master.get_result(dead)
    after = master.submit_task(square_and_say, (5,))
    assert master.get_result(after)[1] == 25
    assert master.interface.job_id(after) == master.interface.job_id(dead)


def worker_pid():
    import os

    return os.getpid()


def test_an_elements_tasks_share_one_worker_until_a_task_ends_it(make_master):
    """One worker runtime per element, not a fork per task; a new one after a crash."""
    master = make_master(max_attempts=1, max_jobs=1)
    first, second = [master.submit_task(worker_pid) for _ in range(2)]
    pid = master.get_result(first)[1]
    assert master.get_result(second)[1] == pid
    dead = master.submit_task(exit_abruptly, (3,))
    with pytest.raises(WorkerLostError, match="exited with status 3 without a result"):
        master.get_result(dead)
    after = master.submit_task(worker_pid)
    assert master.get_result(after)[1] != pid
    assert len({master.interface.job_id(t) for t in (first, second, dead, after)}) == 1


def test_task_errors_name_node_job_and_attempt_and_quote_a_dead_tasks_output(make_master):
    # Seen failing before hosts/JOB and _with_log: no note, no node, no last words.
    import socket

    master = make_master(max_attempts=1, max_jobs=1)
    raised = master.submit_task(fail, ("from the cluster",))
    died = master.submit_task(last_words_then_exit, (3,))
    with pytest.raises(LookupError) as caught:
        master.get_result(raised)
    host = re.escape(socket.gethostname())  # the test cluster's one node is this host
    assert re.fullmatch(rf"\(PyMW: the task raised this on host {host}, worker Slurm job "
                        r"\d+_\d+, attempt 1 of 1\)", caught.value.__notes__[-1]), \
        caught.value.__notes__
    with pytest.raises(WorkerLostError, match=r"(?s)exited with status 3 without a result.*"
                       r"its output ends:.*the job's own last words.*"
                       rf"\(on host {host}, worker Slurm job \d+_\d+, attempt 1 of 1\)"):
        master.get_result(died)


# -- walltime --------------------------------------------------------------------------------


def test_a_timeout_longer_than_the_walltime_is_refused(make_master):
    master = make_master(time=1, walltime_margin=5)
    task = master.submit_task(sleep_for, (1,), timeout=120)
    with pytest.raises(TaskError, match="needs 120 s of walltime .* time=1 "):
        master.get_result(task)


@pytest.mark.slow
def test_walltime_claims_and_kills(make_master):
    """One minute jobs, 40 s margin: a task starts only in an element with more than 40 s
    left, and a task still running at the walltime is lost with Slurm's reason."""
    master = make_master(time=1, walltime_margin=40, max_attempts=1)
    killed = master.submit_task(sleep_for, (300,))
    first = master.submit_task(sleep_for, (22,))
    assert master.get_result(first)[1] == 22
    # The element that ran `first` has under 40 s left: it must not take `second`.
    second = master.submit_task(square_and_say, (2,))
    assert master.get_result(second)[1] == 4
    assert master.interface.job_id(second) not in (master.interface.job_id(first),
                                                  master.interface.job_id(killed))
    with pytest.raises(WorkerLostError, match="TIMEOUT") as caught:
        master.get_result(killed)
    assert master.interface.job_id(killed) in str(caught.value)


# -- jobs ended behind PyMW's back -----------------------------------------------------------


def test_scancel_behind_pymws_back_loses_only_the_unfinished_task(make_master, work_dir,
                                                                  slurm_cluster):
    retries = Retries()
    master = make_master(max_attempts=2, max_jobs=1)
    master.add_observer(retries)
    done = master.submit_task(square_and_say, (3,))
    assert master.get_result(done)[1] == 9
    marker = os.path.join(work_dir, "marker")
    task = master.submit_task(sleep_unless_marked, (marker,))
    wait_until(lambda: os.path.exists(marker) and master.interface.job_id(task), 30,
             "the first attempt to start")
    job = master.interface.job_id(task)
    assert job == master.interface.job_id(done)  # the same element ran both
    r = slurm_cluster.command("scancel", job)
    assert r.returncode == 0, r.stderr
    assert master.get_result(task)[1] == "retried"
    assert task.attempts == 2
    assert master.interface.job_id(task) != job
    assert len(retries.reasons) == 1
    assert f"Slurm job {job}" in retries.reasons[0] and "CANCELLED" in retries.reasons[0]
    assert master.get_result(done)[1] == 9  # the finished task kept its result


@pytest.mark.wait_limit(90)
def test_a_job_killed_without_a_word_is_seen_by_squeue_and_its_task_retried(
        make_master, work_dir, slurm_cluster):
    """SIGKILL to the job's processes (as a node failure or the OOM killer would): no
    lost note is written, the job just leaves the queue. Seen failing with _vanished not
    called from _poll_queue: the task waited forever (the wait_limit failed the test)."""
    retries = Retries()
    master = make_master(max_attempts=2, max_jobs=1, squeue_interval=0.2)
    master.add_observer(retries)
    marker = os.path.join(work_dir, "marker")
    task = master.submit_task(sleep_unless_marked, (marker,))
    wait_until(lambda: os.path.exists(marker) and master.interface.job_id(task), 60,
               "the first attempt to start")
    job = master.interface.job_id(task)
    # Not `scancel --signal=KILL`: Slurm makes that a cancel (SIGTERM first, a lost note).
    array, _, index = job.partition("_")
    pids = {pid for pid, _ in processes_marked("SLURM_ARRAY_JOB_ID", array)} & \
        {pid for pid, _ in processes_marked("SLURM_ARRAY_TASK_ID", index)}
    assert pids, f"no process of Slurm job {job} found"
    # All at once, as a node that fails: stopped first, so that the element cannot see its
    # task's process die and write a lost note between two of the kills (a loaded run
    # saw it: "the task's process ... was killed by signal 9").
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    wait_dead(pids, 10, f"the processes of Slurm job {job}")
    # A killed element cannot remove its scratch directory on the node ($TMPDIR): the test
    # does, as a node's tmp cleaner would.
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"pymw-slurm-{job}-*")):
        shutil.rmtree(path, ignore_errors=True)
    assert master.get_result(task)[1] == "retried"
    assert task.attempts == 2
    assert master.interface.job_id(task) != job
    assert len(retries.reasons) == 1, retries.reasons
    # The squeue path, not the element's SIGTERM handler ("was sent SIGTERM").
    assert f"Slurm job {job} ended without the result of {task.name}" in retries.reasons[0]
    assert os.listdir(os.path.join(master.interface.run_dir, "lost")) == []


# -- idle elements ---------------------------------------------------------------------------


def test_an_element_with_nothing_to_do_leaves_after_idle_timeout(make_master, slurm_cluster):
    # Seen failing with idle_timeout=30 here: the element stayed in the queue past the wait.
    master = make_master(idle_timeout=2, delete_files=False)
    task = master.submit_task(square_and_say, (3,))
    assert master.get_result(task)[1] == 9
    job = master.interface.job_id(task)
    # Well under the default idle_timeout (15 s): the option, not the default, ended it.
    wait_until(lambda: job not in run_jobs(slurm_cluster, master), 12,
               f"the idle element {job} to leave Slurm's queue")
    ended = file_text(os.path.join(master.interface.run_dir, "ended", job), 10,
                      "the element's ended marker")
    assert ended.startswith("idle for 2 s\n") and "ran=1 " in ended, ended
    assert master.interface.arrays and len(master.interface.arrays) == 1  # none resubmitted


# -- resources and impossible jobs -------------------------------------------------------------


def test_a_job_the_cluster_cannot_run_fails_its_tasks_with_slurms_reason(make_master):
    master = make_master(sbatch={"mincpus": 64})
    tasks = [master.submit_task(square_and_say, (i,)) for i in range(2)]
    for task in tasks:
        with pytest.raises(InterfaceError, match="Slurm refused .*node configuration"):
            master.get_result(task)
    assert master.interface.arrays == []  # nothing was submitted


def test_per_task_resources_are_sbatch_options_and_sets_never_share_an_array(
        make_master, work_dir, slurm_cluster):
    """Asked of the controller (squeue's %C CPUs and %m memory of each element), not of the
    command PyMW builds. Seen failing with _group() ignoring resources: one array of 1 CPU."""
    master = make_master()
    gate = os.path.join(work_dir, "gate")
    small = [master.submit_task(wait_for_file, (gate,), resources={"memory": "100M"})
             for _ in range(2)]
    large = master.submit_task(wait_for_file, (gate,), resources={"cpus": 2, "memory": "200M"})
    tasks = [*small, large]
    # One element per task (the elements wait for the gate, none leaves before it opens).
    wait_until(lambda: sum(size for _, size in master.interface.arrays) == 3, 60,
               "an element for each task to be submitted")
    out = slurm_cluster.command("squeue", "-h", "-r", f"--name=pymw-{master.interface.run_id}",
                                "-o", "%F|%C|%m")
    assert out.returncode == 0, out.stderr
    asked = {}
    for line in out.stdout.split():
        array, cpus, memory = line.split("|")
        asked.setdefault(array, set()).add((cpus, memory))
    assert set(asked) == {array for array, _ in master.interface.arrays}, asked
    assert all(len(sets) == 1 for sets in asked.values()), asked  # no array mixes sets
    assert set().union(*asked.values()) == {("1", "100M"), ("2", "200M")}, asked
    with open(gate, "w"):
        pass
    assert [master.get_result(t)[1] for t in tasks] == ["released"] * 3
    large_array = master.interface.job_id(large).partition("_")[0]
    assert asked[large_array] == {("2", "200M")}
    for task in small:
        assert asked[master.interface.job_id(task).partition("_")[0]] == {("1", "100M")}


def test_tasks_with_resources_the_node_cannot_give_fail_and_others_run(make_master):
    master = make_master()
    big = master.submit_task(square_and_say, (1,), resources={"cpus": 64})
    small = master.submit_task(square_and_say, (2,), resources={"cpus": 1, "memory": "100M"})
    with pytest.raises(InterfaceError, match="cpus.: 64.*node configuration"):
        master.get_result(big)
    assert master.get_result(small)[1] == 4
    assert len(master.interface.arrays) == 1


def test_tasks_waiting_on_jobs_that_all_pend_say_why(make_master, slurm_cluster, caplog,
                                                     monkeypatch):
    # Seen failing: a first version warned at once, of Reason=None (squeue before the
    # scheduler looked), never of BeginTime: the wait below timed out.
    import logging

    import pymw_slurm.interface

    monkeypatch.setattr(pymw_slurm.interface, "_STALL_WARN", 0.0)
    monkeypatch.setattr(pymw_slurm.interface, "_STALL_REPEAT", 0.5)
    caplog.set_level(logging.WARNING, logger="pymw.slurm")
    master = make_master(sbatch={"begin": "now+3600"}, squeue_interval=0.2)  # pends an hour
    task = master.submit_task(square_and_say, (1,))
    wait_until(lambda: any("pend with Reason=BeginTime" in r.getMessage()
                           for r in caplog.records), 60,
               "a warning naming the reason the only job pends")
    message = next(r.getMessage() for r in caplog.records if "Reason=BeginTime" in r.getMessage())
    assert "1 task(s) queued" in message and master.interface.job_name in message
    assert master.interface.get_status()["pending"] == {"BeginTime": 1}
    # Repeated while it lasts (every _STALL_REPEAT s; seen failing unpatched: one warning).
    wait_until(lambda: sum("Reason=BeginTime" in r.getMessage() for r in caplog.records) >= 2,
               30, "the warning to be repeated while the job still pends")
    assert task.cancel()


@pytest.mark.wait_limit(90)
def test_jobs_that_pend_with_a_reason_that_never_clears_fail_their_tasks(make_master,
                                                                         slurm_cluster):
    """EnforcePartLimits=NO (Slurm's default): a job over its partition's MaxTime is
    accepted, `sbatch --test-only` included, and pends forever, first with
    Reason=PartitionConfig, a second later with Reason=PartitionTimeLimit (seen with a
    plain sbatch). Seen failing with both left out of NEVER_REASONS: the task waited until
    the wait_limit."""
    r = slurm_cluster.command("scontrol", "create", "PartitionName=onemin", "Nodes=ALL",
                              "MaxTime=1", "State=UP")
    assert r.returncode == 0, r.stderr
    try:
        master = make_master(partition="onemin", time=5, squeue_interval=0.2)
        task = master.submit_task(square_and_say, (1,))
        never = r"Reason=Partition(Config|TimeLimit)"
        with pytest.raises(TaskError, match="Slurm will never start the jobs .*" + never):
            master.get_result(task)
        later = master.submit_task(square_and_say, (2,))  # the same group: at once
        with pytest.raises(TaskError, match=never):
            master.get_result(later)
        assert len(master.interface.arrays) == 1
        wait_until(lambda: run_jobs(slurm_cluster, master) == {}, 30,
                   "the array that could never start to be cancelled")
    finally:  # later tests see the cluster as it was
        slurm_cluster.command("scancel", "--partition=onemin")
        wait_until(lambda: slurm_cluster.command("scontrol", "delete",
                                                 "PartitionName=onemin").returncode == 0,
                   30, "the partition onemin to be deleted")


# -- cancel and timeout ------------------------------------------------------------------------


def test_cancelling_a_queued_task_takes_it_back(make_master, slurm_cluster):
    master = make_master(sbatch={"begin": "now+3600"})  # the element pends for an hour
    task = master.submit_task(square_and_say, (1,))
    wait_until(lambda: list(run_jobs(slurm_cluster, master).values()) == ["PENDING"], 30,
             "the element to be pending")
    assert task.cancel()
    with pytest.raises(TaskCancelledError):
        master.get_result(task)
    assert os.listdir(os.path.join(master.interface.run_dir, "tasks", "g0")) == []
    wait_until(lambda: run_jobs(slurm_cluster, master) == {}, 40,
             "the surplus pending element to be cancelled")


def test_cancelling_a_running_task_kills_it_and_its_element_goes_on(make_master):
    master = make_master(max_jobs=1)
    task = master.submit_task(sleep_for, (120,))
    wait_until(lambda: master.interface.job_id(task) is not None, 30, "the task to be claimed")
    assert task.cancel()
    with pytest.raises(TaskCancelledError):
        master.get_result(task)
    after = master.submit_task(square_and_say, (4,))
    assert master.get_result(after)[1] == 16
    assert master.interface.job_id(after) == master.interface.job_id(task)


def test_a_task_past_its_timeout_is_killed(make_master):
    master = make_master(max_jobs=1)
    task = master.submit_task(sleep_for, (120,), timeout=3)
    with pytest.raises(TaskTimeoutError):
        master.get_result(task)
    after = master.submit_task(square_and_say, (6,))
    assert master.get_result(after)[1] == 36


# -- closing -----------------------------------------------------------------------------------


def test_close_cancels_pending_jobs_and_removes_the_runs_files(make_master, slurm_cluster,
                                                              work_dir):
    master = make_master(sbatch={"begin": "now+3600"})
    for i in range(3):
        master.submit_task(square_and_say, (i,))
    wait_until(lambda: list(run_jobs(slurm_cluster, master).values()) == ["PENDING"] * 3, 30,
             "3 pending elements")
    run_dir = master.interface.run_dir
    master.close()
    assert run_jobs(slurm_cluster, master) == {}
    assert not os.path.exists(run_dir)
    assert os.listdir(work_dir) == []  # the user's work_dir itself stays


def test_delete_files_false_keeps_the_runs_files(make_master):
    master = make_master(delete_files=False)
    task = master.submit_task(square_and_say, (2,))
    assert master.get_result(task)[1] == 4
    run_dir = master.interface.run_dir
    master.close()
    assert os.listdir(os.path.join(run_dir, "replies")) == [
        f"1@{master.interface.job_id(task)}"]


EXIT_SCRIPT = textwrap.dedent("""
    import sys, time
    from pymw_core import Master
    master = Master("slurm", work_dir=sys.argv[1], sbatch={"begin": "now+3600"})
    for i in range(3):
        master.submit_task(abs, (i,))
    deadline = time.monotonic() + 60
    # All three in the queue: on a busy machine the first task can leave in an array of
    # its own before the other two are submitted (a loaded run saw 1 job of 3).
    while sum(size for _, size in master.interface.arrays) < 3:
        if time.monotonic() > deadline:
            sys.exit(f"the 3 tasks' job arrays not submitted within 60 s: {master.interface.arrays}")
        time.sleep(0.05)
    print(master.interface.run_id, master.interface.run_dir, flush=True)
    sys.stdin.readline()  # the test has seen the jobs in the queue
    if sys.argv[2] == "wait":
        time.sleep(120)
""")


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_interpreter_exit_and_sigterm_cancel_the_jobs(slurm_cluster, work_dir, how):
    script = os.path.join(slurm_cluster.run_dir, f"leave-{how}.py")
    with open(script, "w") as fh:
        fh.write(EXIT_SCRIPT)
    proc = subprocess.Popen([sys.executable, script, work_dir, "exit" if how == "exit" else "wait"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = read_line(proc.stdout, 120, "the program to print its run")
        assert line, f"the program ended before its jobs were queued (exit {proc.wait()})"
        run, run_dir = line.split()
        assert len(run_jobs(slurm_cluster, run)) == 3
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if how == "sigterm":
            time.sleep(0.2)
            proc.terminate()
        code = proc.wait(timeout=30)
        assert code == (128 + 15 if how == "sigterm" else 0)
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    assert run_jobs(slurm_cluster, run) == {}
    assert not os.path.exists(run_dir)


# -- options and the controller --------------------------------------------------------------


def test_an_unreachable_controller_is_a_clear_error_at_start(slurm_cluster, work_dir):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = os.path.join(slurm_cluster.run_dir, "nowhere.conf")
    with open(slurm_cluster.conf) as fh:
        lines = fh.read().splitlines()
    with open(config, "w") as fh:
        fh.write("\n".join(f"SlurmctldPort={port}" if line.startswith("SlurmctldPort=") else line
                           for line in lines) + "\n")
    saved = os.environ["SLURM_CONF"]
    os.environ["SLURM_CONF"] = config
    try:
        started = time.monotonic()
        with pytest.raises(InterfaceError, match="cannot reach the Slurm controller"):
            Master("slurm", work_dir=work_dir, connect_timeout=5)
        assert time.monotonic() - started < 20
    finally:
        os.environ["SLURM_CONF"] = saved
    assert os.listdir(work_dir) == []  # nothing written for the failed run


@pytest.mark.wait_limit(120)
def test_a_controller_lost_mid_run_delivers_replies_then_fails_the_rest(make_master, work_dir,
                                                                        slurm_cluster):
    """slurmctld stops with an element running: what elements write still arrives; after
    controller_timeout the tasks that need Slurm fail with a clear error, never a hang.
    The controller is started again after, so later tests have a cluster."""
    master = make_master(max_jobs=2, controller_timeout=15, connect_timeout=3,
                         squeue_interval=0.2, squeue_max_interval=1)
    gate = os.path.join(work_dir, "gate")
    running = master.submit_task(wait_for_file, (gate,))
    wait_until(lambda: master.interface.job_id(running), 60, "the task to be claimed")
    slurm_cluster.stop_daemons("slurmctld")
    try:
        with open(gate, "w"):
            pass
        assert master.get_result(running)[1] == "released"
        # The element still runs: a task of its group needs no controller.
        same = master.submit_task(square_and_say, (4,))
        assert master.get_result(same)[1] == 16
        assert master.interface.job_id(same) == master.interface.job_id(running)
        # Other resources need a new job: sbatch cannot reach the controller.
        other = master.submit_task(square_and_say, (5,), resources={"memory": "100M"})
        with pytest.raises(InterfaceError, match="the Slurm controller has not answered for"):
            master.get_result(other)
        later = master.submit_task(square_and_say, (6,))
        with pytest.raises(Exception, match="the Slurm controller has not answered"):
            master.get_result(later)
    finally:
        slurm_cluster.start_daemons("slurmctld")


def test_a_controller_back_within_controller_timeout_loses_nothing(make_master, slurm_cluster,
                                                                    caplog):
    """sbatch and squeue are retried while the controller is away: a task that needed a
    new job when it went runs once it is back, also while the restarted controller still
    refuses jobs because the node has not registered again (slurmd is held back here).
    Seen failing before _settling(): the task failed with "Slurm refused ... Requested node
    configuration is not available" (in a full run of tests/slurm, slurmd not held back)."""
    import logging

    caplog.set_level(logging.WARNING, logger="pymw.slurm")

    def logged(text):
        return any(text in r.getMessage() for r in caplog.records)

    master = make_master(controller_timeout=300, connect_timeout=3, squeue_interval=0.2,
                         squeue_max_interval=1)
    assert master.get_result(master.submit_task(square_and_say, (1,)))[1] == 1  # it answered
    slurm_cluster.stop_daemons("slurmctld", "slurmd")
    try:
        task = master.submit_task(square_and_say, (2,), resources={"memory": "100M"})
        wait_until(lambda: logged("the Slurm controller does not answer"), 60,
                   "the master to see the controller gone")
        slurm_cluster.start_daemons("slurmctld", settled=False)
        # Most often the controller refuses the job until slurmd registers again (the
        # case this test was written for); it may also take it at once, pending. Give
        # either a moment to happen; what is asserted is the task's one run below.
        wait_until(lambda: logged("sbatch refused jobs right after the Slurm controller came")
                   or len(master.interface.arrays) == 2, 30,
                   "the new job submitted, or refused while the node is not registered",
                   fail=False)
    finally:
        slurm_cluster.start_daemons("slurmctld", "slurmd")
    assert master.get_result(task)[1] == 4
    assert task.attempts == 1
    assert len(master.interface.arrays) == 2  # the first group's and the new one's


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"work_dir": "relative/dir"}, "must be an absolute path"),
        ({"work_dir": "/etc/hostname/below-a-file"}, "cannot use work_dir"),
        ({"python": "bin/python3"}, "relative path"),
        ({"sbatch": {"array": "0-3"}}, "cannot be passed through"),
        ({"sbatch": {"qos": ["a"]}}, "must be a string"),
        ({"time": "soon"}, "time must be minutes"),
        ({"time": 1, "walltime_margin": 60}, "walltime_margin .* must be shorter"),
        ({"max_jobs": 0}, "max_jobs must be a positive whole number"),
        ({"max_job": 3}, "max_jobs"),  # unknown options are refused, the closest suggested
    ],
)
def test_bad_options_are_refused_before_anything_is_submitted(slurm_cluster, work_dir, options,
                                                              message):
    options.setdefault("work_dir", work_dir)
    with pytest.raises(InterfaceError, match=message):
        Master("slurm", **options)
    assert os.listdir(work_dir) == []


def test_status_counts_jobs_and_controller_calls(make_master):
    master = make_master()
    task = master.submit_task(square_and_say, (7,))
    assert master.get_result(task)[1] == 49
    status = master.get_status()
    assert status["interface"] == "slurm"
    assert status["arrays"] == 1
    assert status["elements"]["completed"] == 1
    assert status["controller_calls"] >= 3  # scontrol show config, sbatch --test-only, sbatch
    assert status["work_dir"] == master.interface.run_dir


def test_every_option_is_documented():
    from pymw_slurm import SlurmInterface

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "interfaces",
                           "slurm.md"), encoding="utf-8") as fh:
        page = fh.read()
    for name in inspect.signature(SlurmInterface).parameters:
        assert f"| `{name}` |" in page, name
