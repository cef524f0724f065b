"""A run outlives its master: real programs on the local interface, SIGKILLed at several
points, then started again on the same journal. Results must equal a clean run's, and
every task the journal held as finished when the master died must have run once in all
(each run of a task leaves a marker file). ``pymw journal`` reads the journal of a live
run from another process.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from pymw_testing import clean_env, read_line, wait_until

N = 40  # tasks per program

PROGRAM = textwrap.dedent("""
    import json, os, sys, time
    from pymw_core import Master

    MARKS, JOURNAL, PACE = sys.argv[1], sys.argv[2], sys.argv[3]

    def work(i, pause):
        fd = os.open(os.path.join(MARKS, f"{i}.{os.getpid()}.{time.time_ns()}"),
                     os.O_CREAT | os.O_WRONLY)
        os.close(fd)
        time.sleep(pause)
        print("ran", i)
        return i * i

    if __name__ == "__main__":
        pause = 0.2 if PACE == "slow" else 0.02
        with Master("local", num_workers=2, journal=JOURNAL) as master:
            tasks = []
            for i in range(N_TASKS):
                tasks.append(master.submit_task(work, (i, pause)))
                print("submitted", i, flush=True)
                if PACE == "submit":
                    time.sleep(0.05)
            results = []
            for task in tasks:
                results.append(master.get_result(task)[1])
                print("result", task.input_data[0], flush=True)
                if PACE == "between":
                    time.sleep(0.05)
            assert all(t.stdout == f"ran {i}\\n" for i, t in enumerate(tasks))
        print("done", json.dumps(results), flush=True)
""").replace("N_TASKS", str(N))


@pytest.fixture
def program(tmp_path):
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    marks = tmp_path / "marks"
    marks.mkdir()
    journal = tmp_path / "run.db"

    def start(pace):
        return subprocess.Popen(
            [sys.executable, str(script), str(marks), str(journal), pace],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
            cwd=tmp_path)

    return start, marks, journal


def runs_per_task(marks):
    counts = dict.fromkeys(range(N), 0)
    for name in os.listdir(marks):
        counts[int(name.split(".")[0])] += 1
    return counts


def finish(proc):
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the program started again did not finish within 120 s")
    assert proc.returncode == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("done "), out
    return json.loads(last[5:])


def read_until(proc, prefix, count, what):
    """Lines of ``proc`` until the ``count``-th one starting with ``prefix``."""
    seen, lines = 0, []
    while seen < count:
        line = read_line(proc.stdout, 60, what)
        if not line:
            pytest.fail(f"the program ended before {what}: {proc.stderr.read()}")
        lines.append(line.strip())
        seen += line.startswith(prefix)
    return lines


@pytest.mark.parametrize(("pace", "prefix", "count"), [
    ("submit", "submitted", 15),  # killed while it still submits (tasks already run)
    ("slow", "result", 3),  # killed with tasks in flight on both workers
    ("between", "result", 20),  # killed between two get_result calls
])
def test_a_sigkilled_master_resumes_and_runs_finished_tasks_once(program, pace, prefix, count):
    start, marks, journal = program
    first = start(pace)
    try:
        lines = read_until(first, prefix, count, f"{count} '{prefix}' lines")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    handed_out = {int(line.split()[1]) for line in lines if line.startswith("result")}
    conn = sqlite3.connect(journal)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Rows are numbered in submit order by the first master: row i+1 is task i.
    finished = {row - 1 for (row,) in conn.execute("SELECT id FROM tasks WHERE state = "
                                                   "'finished'")}
    conn.close()
    assert handed_out <= finished  # what get_result gave out was committed first
    assert finished, "nothing had finished when the master was killed; kill later"
    before = runs_per_task(marks)

    results = finish(start(pace))
    assert results == [i * i for i in range(N)]
    after = runs_per_task(marks)
    assert all(after[i] == 1 for i in finished), {i: after[i] for i in finished}
    assert all(n >= 1 for n in after.values())
    # Only what was unfinished at the kill ran again, each once more at most.
    assert all(after[i] - before[i] <= 1 for i in range(N))
    assert all(after[i] == before[i] for i in finished)
    # A third start answers everything from the journal.
    assert finish(start(pace)) == results
    assert runs_per_task(marks) == after


def test_pymw_journal_reads_a_live_run_from_another_process(program):
    start, _, journal = program
    proc = start("slow")
    try:
        read_until(proc, "result", 2, "two results")

        def summary():
            out = subprocess.run([sys.executable, "-m", "pymw_core", "journal", "--json",
                                  str(journal)], capture_output=True, text=True,
                                 env=clean_env(), timeout=60)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)

        # Every submitted task is in the journal within a fraction of a second.
        live = wait_until(lambda: (s := summary())["tasks"] == N and s, 10,
                          f"the journal to hold all {N} submitted tasks")
        assert live["runs"][-1]["status"] == "live" and live["runs"][-1]["ended"] is None
        assert live["states"]["finished"] >= 2
        assert live["states"]["finished"] < N
        text = subprocess.run([sys.executable, "-m", "pymw_core", "journal", str(journal)],
                              capture_output=True, text=True, env=clean_env(), timeout=60)
        assert " - live" in text.stdout, text.stdout
        assert finish(proc) == [i * i for i in range(N)]
        done = wait_until(lambda: (s := summary())["states"]["finished"] == N and s, 10,
                          "the summary to show every task finished")
        assert done["runs"][-1]["status"] == "ended"
        assert done["hosts"] and done["hosts"][0]["attempts"] >= N
    finally:
        if proc.poll() is None:
            proc.kill()
