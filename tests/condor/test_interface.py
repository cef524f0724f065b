"""The condor interface against a real HTCondor pool on 127.0.0.1 (no mocks).

Jobs run the host's base Python inside the pool's chroot as uid 1000; every work dir is
under the pool's shared directory (the ``job_dir`` fixture).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from pymw_testing import (
    WRITTEN_STDERR,
    WRITTEN_STDOUT,
    exit_abruptly,
    fail,
    last_words_then_exit,
    read_data,
    read_line,
    require,
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
    TaskTimeoutError,
    WorkerLostError,
)

# A batch system on a loaded machine may keep a job idle for minutes: a wait on the
# master fails after 180 s here, not the default 60 s (tests/pymw_testing.py).
pytestmark = [pytest.mark.condor, pytest.mark.wait_limit(180)]


# -- tasks (shipped by value: this module is the user's code) ------------------------------


def sleep_unless_marked(marker):
    """First attempt: leave a marker and sleep (to be removed); a retry returns at once."""
    import os
    import time

    if os.path.exists(marker):
        return "retried"
    with open(marker, "w"):
        pass
    time.sleep(120)
    return "first attempt"


def wait_for_file(path):
    """Return once ``path`` exists (the test makes it): a job held running at will."""
    import os
    import time

    deadline = time.monotonic() + 150
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "never released"
        time.sleep(0.05)
    return "released"


# -- helpers -------------------------------------------------------------------------------


def jobs(master):
    return master.get_status()["jobs"]


def queued_jobs(run_id):
    import htcondor2

    return htcondor2.Schedd().query(
        constraint=f'PyMWRun == "{run_id}"', projection=["ClusterId", "ProcId", "JobStatus"]
    )


def act(action_name, job_id, reason):
    import htcondor2

    return htcondor2.Schedd().act(getattr(htcondor2.JobAction, action_name), job_id,
                                  (reason, 1))


# -- results -------------------------------------------------------------------------------


def test_a_batch_is_one_cluster_with_results_and_stdout(make_master):
    master = make_master()
    tasks = [master.submit_task(square_and_say, (i,)) for i in range(12)]
    assert [master.get_result(t)[1] for t in tasks] == [i * i for i in range(12)]
    assert [t.stdout for t in tasks] == [f"hello {i}\n" for i in range(12)]
    job_ids = [master.interface.job_id(t) for t in tasks]
    assert len({j.split(".")[0] for j in job_ids}) == 1, job_ids
    assert [int(j.split(".")[1]) for j in job_ids] == list(range(12))
    status = master.get_status()
    assert status["interface"] == "condor"
    assert status["clusters"] == 1
    assert status["jobs"]["completed"] == 12
    assert status["jobs"]["idle"] == status["jobs"]["running"] == 0
    # Each task's files go as soon as it is done: the run keeps its log, the runtime zip
    # and the empty file the reply placeholders link to.
    kept = sorted(os.listdir(status["work_dir"]))
    secret = master.interface.run.secret
    assert kept[:2] == ["empty", f"jobs-{secret}.log"], kept
    assert kept[2].startswith("pymw-runtime-") and len(kept) == 3, kept


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
    wait_dead(pids, 10, "the processes the task left running in its condor job")


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


def test_data_files_travel_with_the_job(make_master, job_dir):
    path = os.path.join(job_dir, "input.txt")
    with open(path, "w") as fh:
        fh.write("payload through file transfer")
    os.chmod(path, 0o644)  # the shadow reads it as the job owner
    master = make_master()
    task = master.submit_task(read_data, ("input.txt",), data_files=[path])
    assert master.get_result(task)[1] == "payload through file transfer"



# -- per-task resources ---------------------------------------------------------------------


def test_per_task_resources_are_request_commands_with_one_cluster_per_set(make_master, job_dir):
    """Asked of the schedd (the jobs' ads), not of the text PyMW writes. Seen failing with
    with_resources() returning the base description unchanged: RequestMemory was 300."""
    import htcondor2

    master = make_master(submit={"request_memory": "300MB"})
    gate = os.path.join(job_dir, "gate")
    small = [master.submit_task(wait_for_file, (gate,), resources={"cpus": 1, "memory": "100M"})
             for _ in range(2)]
    large = master.submit_task(wait_for_file, (gate,), resources={"cpus": 2, "memory": "1G"})
    plain = master.submit_task(wait_for_file, (gate,))
    gpu = master.submit_task(wait_for_file, (gate,), resources={"gpus": 1})  # the pool has none
    tasks = [*small, large, plain, gpu]
    wait_until(lambda: all(master.interface.job_id(t) for t in tasks), 60,
               "every task's job to be submitted")
    ads = {f"{ad['ClusterId']}.{ad['ProcId']}": ad for ad in htcondor2.Schedd().query(
        constraint=f'PyMWRun == "{master.interface.run_id}"',
        projection=["ClusterId", "ProcId", "RequestCpus", "RequestMemory", "RequestGPUs"])}

    def asked(task):
        ad = ads[master.interface.job_id(task)]
        return ad.eval("RequestCpus"), ad.eval("RequestMemory"), ad.get("RequestGPUs")

    assert [asked(t) for t in small] == [(1, 100, None)] * 2
    assert asked(large) == (2, 1024, None)
    assert asked(plain) == (1, 300, None)  # submit's request_memory where no resource says
    assert asked(gpu)[0::2] == (1, 1) and asked(gpu)[1] == 300
    clusters = {t.name: master.interface.job_id(t).split(".")[0] for t in tasks}
    assert len(set(clusters.values())) == 4, clusters  # one per distinct set of resources
    assert clusters[small[0].name] == clusters[small[1].name]
    assert master.get_status()["clusters"] == 4
    with open(gate, "w"):
        pass
    assert [master.get_result(t)[1] for t in (*small, large, plain)] == ["released"] * 4
    assert gpu.cancel()  # no slot has a GPU: it would stay idle

# -- held, removed, evicted --------------------------------------------------------------


def test_a_held_job_fails_its_task_with_the_hold_reason(make_master):
    from pymw_condor import JobHeldError

    master = make_master(submit={"on_exit_hold": True})
    task = master.submit_task(square_and_say, (3,))
    with pytest.raises(JobHeldError, match="held: .*OnExitHold.*code 3/") as caught:
        master.get_result(task)
    assert caught.value.code == 3
    assert task.attempts == 1  # holds are final: not retried
    run = master.interface.run_id
    wait_until(lambda: not queued_jobs(run), 10, "the held job to leave the queue")


def test_a_missing_interpreter_is_a_hold_not_a_hang(make_master):
    from pymw_condor import JobHeldError

    master = make_master(python="/nonexistent/bin/python3")
    task = master.submit_task(square_and_say, (3,))
    with pytest.raises(JobHeldError, match="/nonexistent/bin/python3"):
        master.get_result(task)


def test_a_bare_interpreter_name_is_looked_up_on_the_nodes_path(make_master):
    # The chroot's PATH has no Python: env's complaint comes back as the lost job's stderr.
    master = make_master(python="no-such-python3", max_attempts=1)
    task = master.submit_task(square_and_say, (3,))
    with pytest.raises(WorkerLostError, match="(?s)status 127 without a result.*no-such-python3"):
        master.get_result(task)


def test_a_job_removed_behind_pymws_back_is_a_lost_worker(make_master):
    master = make_master(max_attempts=1)
    task = master.submit_task(sleep_for, (120,))
    wait_until(lambda: jobs(master)["running"] == 1, 60, "the job to start")
    act("Remove", master.interface.job_id(task), "removed by the test")
    with pytest.raises(WorkerLostError, match="removed by someone other than PyMW: removed by"):
        master.get_result(task)
    assert jobs(master)["removed"] == 1


def test_a_job_that_ends_without_a_result_is_a_lost_worker(make_master):
    master = make_master(max_attempts=1)
    task = master.submit_task(exit_abruptly, (3,))
    with pytest.raises(WorkerLostError, match="exited with status 3 without a result"):
        master.get_result(task)
    assert jobs(master)["without_result"] == 1


def test_task_errors_name_node_job_and_attempt_and_quote_a_dead_jobs_stderr(make_master):
    # Seen failing before Attempt.ran_on: no note, and no "(on host ...)" in the message.
    master = make_master(max_attempts=1)
    raised = master.submit_task(fail, ("from the pool",))
    died = master.submit_task(last_words_then_exit, (3,))
    with pytest.raises(LookupError) as caught:
        master.get_result(raised)
    assert re.fullmatch(r"\(PyMW: the task raised this on host \S+, worker HTCondor job "
                        r"\d+\.\d+, attempt 1 of 1\)", caught.value.__notes__[-1]), \
        caught.value.__notes__
    with pytest.raises(WorkerLostError, match=r"(?s)exited with status 3 without a result.*"
                       r"the job's own last words.*\(on host \S+, worker HTCondor job "
                       r"\d+\.\d+, attempt 1 of 1\)"):
        master.get_result(died)


def test_a_submit_the_schedd_refuses_fails_the_batch(make_master):
    master = make_master(submit={"universe": "nosuch"})
    tasks = [master.submit_task(square_and_say, (i,)) for i in range(2)]
    for task in tasks:
        with pytest.raises(InterfaceError, match="HTCondor refused to submit 2 jobs"):
            master.get_result(task)


@pytest.mark.parametrize("action", ["Remove", "Vacate"])
def test_a_removed_or_evicted_job_is_run_again(make_master, job_dir, action):
    marker = os.path.join(job_dir, f"marker-{action}")
    master = make_master(max_attempts=2)
    # Shorter than a negotiation cycle: HTCondor cannot re-run the evicted job itself first.
    master.interface.eviction_grace = 0.5
    task = master.submit_task(sleep_unless_marked, (marker,))
    wait_until(lambda: os.path.exists(marker), 60, "the first attempt to start")
    first = master.interface.job_id(task)
    act(action, first, f"{action} by the test")
    assert master.get_result(task)[1] == "retried"
    assert task.attempts == 2 and task.attempt.number == 2
    assert master.interface.job_id(task) not in (None, first)
    status = master.get_status()
    assert status["clusters"] == 2
    assert status["jobs"]["evicted" if action == "Vacate" else "removed"] == 1


# -- cancel and timeout ------------------------------------------------------------------------


def test_cancelling_a_task_removes_its_job(make_master):
    master = make_master(submit={"requirements": "False"})  # idle for ever
    task = master.submit_task(square_and_say, (1,))
    wait_until(lambda: jobs(master)["idle"] == 1, 30, "the job to be queued")
    assert task.cancel()
    with pytest.raises(TaskCancelledError):
        master.get_result(task)
    wait_until(lambda: not queued_jobs(master.interface.run_id), 10, "the job to leave the queue")


def test_a_task_past_its_timeout_has_its_job_removed(make_master):
    master = make_master()
    task = master.submit_task(sleep_for, (120,), timeout=4)
    with pytest.raises(TaskTimeoutError):
        master.get_result(task)
    wait_until(lambda: not queued_jobs(master.interface.run_id), 10, "the job to leave the queue")


# -- closing -------------------------------------------------------------------------------


def test_close_removes_idle_jobs_and_the_runs_files(make_master, job_dir):
    master = make_master(submit={"requirements": "False"})  # jobs that never match
    for i in range(5):
        master.submit_task(square_and_say, (i,))
    wait_until(lambda: jobs(master)["idle"] == 5, 30, "5 idle jobs")
    run, run_dir = master.interface.run_id, master.interface.run_dir
    assert len(queued_jobs(run)) == 5
    master.close()
    assert queued_jobs(run) == []
    assert not os.path.exists(run_dir)
    assert os.path.isdir(job_dir)  # the user's work_dir itself stays


def test_delete_files_false_keeps_the_runs_files(make_master):
    master = make_master(delete_files=False)
    task = master.submit_task(square_and_say, (2,))
    assert master.get_result(task)[1] == 4
    run_dir = master.interface.run_dir
    master.close()
    kept = os.listdir(run_dir)
    secret = master.interface.run.secret
    assert f"jobs-{secret}.log" in kept
    assert f"pymw-task-{task.attempt.id}-{secret}.reply" in kept


def test_a_batch_larger_than_batch_max_is_split_into_clusters(make_master):
    master = make_master(batch_max=5, batch_window=2, submit={"requirements": "False"})
    tasks = [master.submit_task(square_and_say, (i,)) for i in range(12)]
    wait_until(lambda: jobs(master)["idle"] == 12, 60, "12 idle jobs")
    clusters: dict[str, list[int]] = {}
    for task in tasks:  # in submission order
        cluster, proc = master.interface.job_id(task).split(".")
        clusters.setdefault(cluster, []).append(int(proc))
    assert sorted(len(procs) for procs in clusters.values()) == [2, 5, 5], clusters
    assert all(procs == list(range(len(procs))) for procs in clusters.values()), clusters
    assert master.get_status()["clusters"] == 3


def test_close_wait_lets_every_job_finish_first(make_master):
    master = make_master()
    tasks = [master.submit_task(sleep_for, (i * 0.5,)) for i in range(3)]
    run, run_dir = master.interface.run_id, master.interface.run_dir
    master.close(wait=True)
    assert [master.get_result(t)[1] for t in tasks] == [0, 0.5, 1.0]
    assert queued_jobs(run) == [] and not os.path.exists(run_dir)


def test_a_schedd_lost_mid_run_fails_queued_and_later_tasks_in_words(condor_pool, make_master):
    master = make_master(connect_timeout=5)
    assert master.get_result(master.submit_task(square_and_say, (2,)))[1] == 4
    condor_pool.schedd(on=False)
    try:
        words = "cannot reach the HTCondor schedd|HTCondor schedd did not answer"
        lost = master.submit_task(square_and_say, (3,))
        with pytest.raises(InterfaceError, match=words):
            master.get_result(lost)
        with pytest.raises(InterfaceError, match=words):  # no worker will come: at once
            master.get_result(master.submit_task(square_and_say, (4,)))
    finally:
        condor_pool.schedd(on=True)


EXIT_SCRIPT = textwrap.dedent("""
    import sys, time
    from pymw_core import Master
    master = Master("condor", python=sys.argv[1], work_dir=sys.argv[2],
                    submit={"requirements": "False"})
    for i in range(3):
        master.submit_task(abs, (i,))
    deadline = time.monotonic() + 60
    while master.get_status()["jobs"]["idle"] < 3:
        if time.monotonic() > deadline:
            sys.exit(f"3 idle jobs not seen within 60 s: {master.get_status()['jobs']}")
        time.sleep(0.05)
    print(master.interface.run_id, master.interface.run_dir, flush=True)
    sys.stdin.readline()  # the test has seen the jobs in the queue
    if sys.argv[3] == "wait":
        time.sleep(120)
""")


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_interpreter_exit_and_sigterm_remove_the_jobs(condor_pool, job_dir, how):
    script = os.path.join(job_dir, "leave.py")
    with open(script, "w") as fh:
        fh.write(EXIT_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, script, condor_pool.python_for_jobs(), job_dir,
         "exit" if how == "exit" else "wait"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = read_line(proc.stdout, 120, "the program to print its run")
        assert line, f"the program ended before its jobs were queued (exit {proc.wait()})"
        run, run_dir = line.split()
        assert len(queued_jobs(run)) == 3
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if how == "sigterm":
            time.sleep(0.2)
            proc.terminate()
        code = proc.wait(timeout=30)
        assert code == (128 + 15 if how == "sigterm" else 0)  # the master's SIGTERM exit
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    assert queued_jobs(run) == []
    assert not os.path.exists(run_dir)


# -- options and the schedd ------------------------------------------------------------------


def test_an_unreachable_schedd_is_a_clear_error_at_start(condor_pool, job_dir):
    import socket

    import htcondor2

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = os.path.join(job_dir, "nowhere_config")
    with open(condor_pool.condor_config) as fh:
        text = fh.read()
    with open(config, "w") as fh:
        fh.write(text.replace("127.0.0.1\n", f"127.0.0.1:{port}\n"))
    saved = os.environ["CONDOR_CONFIG"]
    os.environ["CONDOR_CONFIG"] = config
    htcondor2.reload_config()
    try:
        started = time.monotonic()
        with pytest.raises(InterfaceError, match="cannot reach the HTCondor schedd|did not answer"):
            Master("condor", python=condor_pool.python_for_jobs(), work_dir=job_dir,
                   connect_timeout=10)
        assert time.monotonic() - started < 15
    finally:
        os.environ["CONDOR_CONFIG"] = saved
        htcondor2.reload_config()
    assert os.listdir(job_dir) == ["nowhere_config"]  # nothing written for the failed run


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"python": "bin/python3"}, "relative path"),
        ({"submit": {"executable": "/bin/true"}}, "cannot be set"),
        ({"submit": {"request_memory": [1, 2]}}, "must be a string"),
        ({"batch_max": 0}, "batch_max must be a positive whole number"),
    ],
)
def test_bad_options_are_refused(condor_pool, job_dir, options, message):
    with pytest.raises(InterfaceError, match=message):
        Master("condor", work_dir=job_dir, **options)


def test_every_option_is_documented():
    import inspect

    try:
        from pymw_condor import CondorInterface
    except ImportError as exc:  # no pool needed, but the plugin and its bindings are
        require(False, f"pymw-condor is not importable: {exc}")

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "interfaces",
                           "condor.md"), encoding="utf-8") as fh:
        page = fh.read()
    for name in inspect.signature(CondorInterface).parameters:
        assert f"| `{name}` |" in page, name


def test_a_root_masters_run_directory_lets_nobody_list_or_plant_files(make_master):
    master = make_master()
    assert master.get_result(master.submit_task(square_and_say, (3,)))[1] == 9
    run_dir = master.interface.run_dir
    mode = stat.S_IMODE(os.stat(run_dir).st_mode)
    if os.geteuid() == 0:  # the jobs run as another user: create and enter, never list
        assert mode == 0o1733
    else:
        assert mode & 0o077 == 0
    secret = master.interface.run.secret
    assert len(secret) >= 16
    for name in os.listdir(run_dir):
        if name.startswith("pymw-task-") or name.startswith("jobs"):
            assert secret in name, name
