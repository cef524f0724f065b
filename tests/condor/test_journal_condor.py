"""A condor run outlives its master: the program is SIGKILLed while its jobs are queued
and running, then started again on the same journal. The new master follows the dead
master's jobs and delivers their replies instead of submitting the tasks again; each
task runs once in all (a marker file per run); the old run's jobs and files are gone
after the new master closed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter

from pymw_testing import clean_env, read_line, run_child, wait_until

N = 4

PROGRAM = textwrap.dedent("""
    import os, sys, time, uuid
    from pymw_core import Master

    WORK, PYTHON, JOURNAL, MARKS, STEP = sys.argv[1:6]

    def slow(x, marks):
        open(os.path.join(marks, f"{x}-{uuid.uuid4().hex}"), "w").close()
        time.sleep(6)
        return x * 3

    if __name__ == "__main__":
        with Master("condor", python=PYTHON, work_dir=WORK, journal=JOURNAL) as m:
            tasks = [m.submit_task(slow, (x, MARKS)) for x in range(N_TASKS)]
            print("submitted", flush=True)
            if STEP == "first":
                while len(m.interface.get_status()["jobs"]) and \\
                        m.interface.get_status()["clusters"] < 1:
                    time.sleep(0.05)
                print("run", m.interface.run_id, m.interface.run_dir, flush=True)
                time.sleep(3600)
            print("results", *[m.get_result(t)[1] for t in tasks], flush=True)
            print("attempts", *[t.attempts for t in tasks], flush=True)
""").replace("N_TASKS", str(N))


def test_a_killed_master_s_jobs_are_collected_by_the_next_one(condor_pool, job_dir):
    script = os.path.join(job_dir, "program.py")
    with open(script, "w") as fh:
        fh.write(PROGRAM)
    marks = os.path.join(job_dir, "marks")
    os.makedirs(marks)
    os.chmod(marks, 0o777)  # the jobs run as another user
    journal = os.path.join(job_dir, "run.db")
    env = clean_env(CONDOR_CONFIG=condor_pool.condor_config)
    python = condor_pool.python_for_jobs()

    def command(step):
        return [sys.executable, script, job_dir, python, journal, marks, step]

    first = subprocess.Popen(command("first"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=job_dir)
    try:
        assert read_line(first.stdout, 120, "the first master to submit") == "submitted\n"
        line = read_line(first.stdout, 120, "the first master's jobs to be submitted")
        assert line.startswith("run "), first.stderr.read()
        _, old_run, old_dir = line.split()
        wait_until(lambda: os.listdir(marks), 120, "a task to start in an HTCondor job")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()

    second = run_child(command("second"), "the second master", 300, env=env, cwd=job_dir)
    assert second.returncode == 0, second.stderr
    lines = dict(line.split(" ", 1) for line in second.stdout.strip().splitlines() if " " in line)
    assert lines["results"].split() == [str(x * 3) for x in range(N)]
    runs = Counter(int(name.split("-")[0]) for name in os.listdir(marks))
    assert runs == dict.fromkeys(range(N), 1), runs  # each task ran once in all
    assert [int(a) for a in lines["attempts"].split()] == [1] * N  # collected, not rerun

    import htcondor2

    def old_jobs():
        return htcondor2.Schedd().query(constraint=f'PyMWRun == "{old_run}"',
                                        projection=["ClusterId"])

    wait_until(lambda: not old_jobs(), 60, "the dead master's jobs to leave the queue")
    assert not os.path.exists(old_dir)
