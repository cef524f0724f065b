"""A slurm run outlives its master: the program is SIGKILLed while its jobs run, then
started again on the same journal. Tasks the old jobs were running are collected from
them (not submitted again); tasks still queued are taken back and run in the new run;
each runs once in all (a marker file per run of a task); no job is left behind.
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

    WORK, JOURNAL, MARKS, STEP = sys.argv[1:5]

    def slow(x):
        job = os.environ.get("SLURM_JOB_ID", "?")
        open(os.path.join(MARKS, f"{x}-{job}-{uuid.uuid4().hex}"), "w").close()
        time.sleep(6)
        return x * 3

    if __name__ == "__main__":
        with Master("slurm", work_dir=WORK, journal=JOURNAL, idle_timeout=5) as m:
            tasks = [m.submit_task(slow, (x,)) for x in range(N_TASKS)]
            print("submitted", m.interface.run_id, flush=True)
            if STEP == "first":
                time.sleep(3600)
            print("results", *[m.get_result(t)[1] for t in tasks], flush=True)
            print("attempts", *[t.attempts for t in tasks], flush=True)
""").replace("N_TASKS", str(N))


def test_a_killed_master_s_jobs_are_collected_by_the_next_one(slurm_cluster, work_dir, tmp_path):
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    marks = tmp_path / "marks"
    marks.mkdir()
    journal = tmp_path / "run.db"
    env = clean_env(SLURM_CONF=slurm_cluster.conf)

    def command(step):
        return [sys.executable, str(script), work_dir, str(journal), str(marks), step]

    first = subprocess.Popen(command("first"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=tmp_path)
    try:
        line = read_line(first.stdout, 120, "the first master to submit")
        assert line.startswith("submitted"), first.stderr.read()
        old_run = line.split()[1]
        # Killed while at least one task runs in a job (its marker is written).
        wait_until(lambda: os.listdir(marks), 120, "a task to start in a Slurm job")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    running_at_kill = {int(n.split("-")[0]) for n in os.listdir(marks)}

    second = run_child(command("second"), "the second master", 240, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    lines = dict(line.split(" ", 1) for line in second.stdout.strip().splitlines())
    assert lines["results"].split() == [str(x * 3) for x in range(N)]
    runs = Counter(int(name.split("-")[0]) for name in os.listdir(marks))
    assert runs == dict.fromkeys(range(N), 1), runs  # each task ran once in all
    # Those the old jobs were running were collected, not run anew: no new attempt ran
    # them in the second run (the re-attached attempt is the second run's only one).
    assert running_at_kill
    attempts = [int(a) for a in lines["attempts"].split()]
    assert all(attempts[x] == 1 for x in running_at_kill)

    def jobs_of(run):
        got = slurm_cluster.command("squeue", "-h", "-r", f"--name=pymw-{run}", "-o", "%i")
        return got.stdout.split()

    wait_until(lambda: not jobs_of(old_run), 60, "the dead master's jobs to end")
    wait_until(lambda: not [n for n in os.listdir(work_dir) if old_run in n], 30,
               "the dead master's run directory to be removed")
