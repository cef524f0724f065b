"""The journal in-process: what it records, what a second master finds in it, and the
files it refuses. The real worker runtime runs the tasks (pymw_testing.Inline); the
journal is a real SQLite file. SIGKILLed programs are in tests/local/test_journal_kill.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest
from pymw_testing import Inline, Workers, clean_env

from pymw_core import JournalError, Master, PyMWExecutor
from pymw_core.journal import APPLICATION_ID, open_reader, task_key


def square(x):
    print("squaring", x)
    return x * x


def cube(x):
    return x * x * x


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad input {x}")
    return x


def read_file(name):
    with open(name) as fh:
        return fh.read()


def run_once(path, fn, inputs, interface=None, **options):
    """A master on ``path`` runs ``fn`` on each input; returns results and the interface."""
    interface = interface or Inline()
    with Master(interface, journal=path, **options) as master:
        tasks = [master.submit_task(fn, args) for args in inputs]
        results = []
        for task in tasks:
            try:
                results.append(master.get_result(task)[1])
            except Exception as exc:
                results.append(exc)
    return results, interface


def rows(path, sql):
    conn = open_reader(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- what a run records ------------------------------------------------------------------


def test_a_run_records_its_tasks_attempts_and_results(tmp_path):
    path = tmp_path / "run.db"
    results, _ = run_once(path, square, [(2,), (3,)], interface=Workers(("a", "b")))
    assert results == [4, 9]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert rows(path, "SELECT name, state, attempts FROM tasks ORDER BY id") == [
        ("square", "finished", 1), ("square", "finished", 1)]
    attempts = rows(path, "SELECT task, number, worker, outcome, ended IS NOT NULL "
                          "FROM attempts ORDER BY id")
    assert [(a[1], a[3], a[4]) for a in attempts] == [(1, "ok", True), (1, "ok", True)]
    assert {a[2] for a in attempts} <= {"a", "b"}
    assert rows(path, "SELECT ok, stdout FROM results ORDER BY task") == [
        (1, "squaring 2\n"), (1, "squaring 3\n")]
    (run,) = rows(path, "SELECT ended IS NOT NULL, program, interface FROM runs")
    assert run[0] == 1 and run[2] == "Workers"


def _ops(*tasks):
    """The ops a task submitted, run once and finished queues, for each row in ``tasks``."""
    from pymw_core import journal_writer as W
    from pymw_core.journal import _result_row

    ops = []
    for row in tasks:
        ops.append((W._SUB, row, f"key{row}", "f", 1.0, False))
        ops.append((W._START, row, row, 1, "w1", "here", 2.0))
        ops.append((W._END, row, row, "ok", None, "finished", 3.0,
                    _result_row(row, None, row, "", "")))
    return ops


def test_a_task_that_ends_within_the_hold_is_written_once_in_its_final_state():
    from pymw_core import journal_writer as J

    statements = dict(J._fold(_ops(1, 2), run=7, carry=J._Carry(), flush=False))
    assert [t[5] for t in statements[J._INSERT_TASKS]] == ["finished", "finished"]
    assert [t[7] for t in statements[J._INSERT_TASKS]] == [1, 1]  # one attempt each
    assert statements[J._UPDATE_TASKS] == []  # never inserted as queued, then updated
    assert [a[8] for a in statements[J._INSERT_ATTEMPTS]] == ["ok", "ok"]


def test_a_queued_task_is_written_once_held_for_hold_rows_newer_tasks(monkeypatch):
    """A task held back (not ended) is written once _HOLD_ROWS newer tasks were
    submitted, even within _HOLD: a reader's count of tasks (pymw watch) relies on it."""
    from pymw_core import journal_writer as J

    monkeypatch.setattr(J, "_HOLD_ROWS", 3)
    carry = J._Carry()
    subs = [(J._SUB, row, f"key{row}", "f", 1.0, False) for row in range(1, 6)]
    written = dict(J._fold(subs, run=7, carry=carry, flush=False))[J._INSERT_TASKS]
    assert [t[0] for t in written] == [1, 2]  # 5 - 3: rows 1 and 2 lag by 3 or more
    assert sorted(carry.tasks) == [3, 4, 5]
    # Later ops on a written row update it; on a held row they change what is held.
    ends = [(J._START, 1, 11, 1, "w", "h", 2.0), (J._START, 4, 14, 1, "w", "h", 2.0)]
    statements = dict(J._fold(ends, run=7, carry=carry, flush=False))
    assert statements[J._UPDATE_TASKS] == [["running", None, 1, 1]]
    assert carry.tasks[4][5] == "running"
    assert [a[0] for a in statements[J._INSERT_ATTEMPTS]] == [11]  # 14 waits with task 4


def test_rows_of_earlier_batches_are_updated_many_to_a_statement(tmp_path, monkeypatch):
    """Tasks written as queued (no hold), then run and finished in one batch: the
    multi-row UPDATE leaves every row in its own final state."""
    from pymw_core import journal as J
    from pymw_core import journal_writer

    monkeypatch.setattr(journal_writer, "_HOLD", 0.0)  # the writer process is told it
    path = str(tmp_path / "run.db")
    journal = J.Journal(path, program="p", interface="inline", settings={})
    try:
        entries = [journal.entry(i, f"key{i}", "f", None) for i in range(1, 71)]
        for entry in entries:
            journal.submitted(entry, 1.0)
        journal.sync()
        assert rows(path, "SELECT count(*) FROM tasks WHERE state = 'queued'") == [(70,)]
        with journal._cond:  # one batch: every op below is queued before the writer looks
            journal._idle = False  # (so that put() does not wake it, taking _cond again)
            for i, entry in enumerate(entries, 1):
                journal.started(entry, i, 1, "w", 2.0)
                state = "failed" if i % 7 == 0 else "finished"
                journal.ended(entry.row, i, "ok" if state == "finished" else "error",
                              None, state, 3.0 + i, (None, i, "", ""))
        journal.sync()
    finally:
        journal.close()
    got = rows(path, "SELECT id, state, ended, attempts FROM tasks ORDER BY id")
    assert got == [(row, "failed" if i % 7 == 0 else "finished", 3.0 + i, 1)
                   for i, row in enumerate((e.row for e in entries), 1)]
    assert rows(path, "SELECT count(*) FROM attempts WHERE ended IS NOT NULL") == [(70,)]


def test_a_result_is_committed_before_get_result_hands_it_out(tmp_path):
    path = tmp_path / "run.db"
    seen = []
    with Master(Inline(), journal=path) as master:
        for i in range(20):
            task = master.submit_task(square, (i,))
            master.get_result(task)
            # Another connection (another process would see the same) finds it there.
            seen.append(rows(path, "SELECT count(*) FROM results WHERE ok = 1")[0][0])
    assert seen == list(range(1, 21))


def test_a_busy_run_commits_each_task_before_its_handout(tmp_path):
    """get_result and as_completed wait for the task's own end to be committed, not for
    every later row: in a busy run (batched commits) each one handed out is in the journal.
    Seen to fail with the wait stopping one op short of the task's end (seq - 1)."""
    path = tmp_path / "run.db"
    missing = []
    with Master(Workers(), journal=path) as master:
        reader = open_reader(path)
        tasks = [master.submit_task(cube, (i,)) for i in range(300)]
        for task in tasks[:150]:
            master.get_result(task)
            if not reader.execute("SELECT 1 FROM results WHERE task = ? AND ok = 1",
                                  (task._journal.row,)).fetchone():
                missing.append(task.id)
        for task in master.as_completed(tasks[150:], timeout=60):
            if not reader.execute("SELECT 1 FROM results WHERE task = ? AND ok = 1",
                                  (task._journal.row,)).fetchone():
                missing.append(task.id)
    reader.close()
    assert missing == []


# -- resume -----------------------------------------------------------------------------------


def test_a_second_run_answers_finished_tasks_from_the_journal(tmp_path):
    path = tmp_path / "run.db"
    first, ran = run_once(path, square, [(i,) for i in range(5)])
    assert len(ran.executed) == 5
    interface = Inline()
    with Master(interface, journal=path) as master:
        tasks = [master.submit_task(square, (i,)) for i in range(5)]
        assert all(t.done() and t.state == "finished" for t in tasks)  # at once: nothing ran
        assert tasks[3].stdout == "squaring 3\n"
        again = [master.get_result(t)[1] for t in tasks]
    assert again == first
    assert interface.executed == []


def test_a_changed_input_or_function_is_a_new_task(tmp_path):
    path = tmp_path / "run.db"
    run_once(path, square, [(1,), (2,)])
    results, ran = run_once(path, square, [(1,), (5,)])  # 5 is new
    assert results == [1, 25] and len(ran.executed) == 1
    results, ran = run_once(path, cube, [(2,)])  # another function, same input
    assert results == [8] and len(ran.executed) == 1


def test_failures_run_again_unless_resume_all_replays_them(tmp_path):
    path = tmp_path / "run.db"
    results, _ = run_once(path, fail_on, [(1, 2), (2, 2)])
    assert results[0] == 1 and isinstance(results[1], ValueError)
    results, ran = run_once(path, fail_on, [(1, 2), (2, 2)])
    assert len(ran.executed) == 1  # the failure ran again, the success did not
    results, ran = run_once(path, fail_on, [(1, 2), (2, 2)], resume="all")
    assert ran.executed == []
    assert isinstance(results[1], ValueError) and "bad input 2" in str(results[1])
    assert "bad input 2" in str(results[1].__cause__)  # the worker's traceback comes back
    results, ran = run_once(path, fail_on, [(1, 2), (2, 2)], resume="none")
    assert len(ran.executed) == 2
    # One row per task however many runs: its attempts add up across them.
    assert rows(path, "SELECT state, attempts FROM tasks ORDER BY id") == [
        ("finished", 2), ("failed", 3)]


def test_the_kth_submission_of_a_key_matches_its_kth_recorded_task(tmp_path):
    path = tmp_path / "run.db"
    run_once(path, square, [(7,)] * 3)
    results, ran = run_once(path, square, [(7,)] * 4)
    assert results == [49] * 4
    assert len(ran.executed) == 1  # three answered from the journal, the fourth is new
    assert rows(path, "SELECT count(*) FROM tasks")[0][0] == 4


def test_data_file_contents_are_part_of_the_key(tmp_path):
    path = tmp_path / "run.db"
    data = tmp_path / "data.txt"
    data.write_text("one")

    def run():
        interface = Inline()
        with Master(interface, journal=path) as master:
            task = master.submit_task(read_file, (str(data),), data_files=[str(data)])
            return master.get_result(task)[1], len(interface.executed)

    assert run() == ("one", 1)
    assert run() == ("one", 0)
    data.write_text("two")
    assert run() == ("two", 1)


def test_the_key_covers_code_input_and_extras():
    base = task_key(("f", 1, b"code"), b"args", None)
    assert base == task_key(("f", 99, b"code"), b"args", None)  # the id is no part of it
    assert base != task_key(("f", 1, b"other code"), b"args", None)
    assert base != task_key(("f", 1, b"code"), b"other args", None)
    assert base != task_key(("f", 1, b"code"), b"args", {"deps": b"dep"})
    assert task_key(("s", "a.py", "print(1)"), b"", None) != task_key(
        ("s", "a.py", "print(2)"), b"", None)


def test_map_as_completed_and_the_executor_resume_too(tmp_path):
    path = tmp_path / "run.db"
    with Master(Inline(), journal=path) as master:
        assert list(master.map(square, range(4))) == [0, 1, 4, 9]
        done = master.as_completed([master.submit_task(cube, (i,)) for i in range(3)])
        assert sorted(t.get_result() if hasattr(t, "get_result") else master.get_result(t)[1]
                      for t in done) == [0, 1, 8]
    with PyMWExecutor(Inline(), journal=path) as pool:
        assert list(pool.map(fail_on, [5, 6], [0, 0])) == [5, 6]
    interface = Inline()
    with Master(interface, journal=path) as master:
        assert list(master.map(square, range(4))) == [0, 1, 4, 9]
        done = list(master.as_completed([master.submit_task(cube, (i,)) for i in range(3)]))
        assert sorted(master.get_result(t)[1] for t in done) == [0, 1, 8]
    assert interface.executed == []
    interface = Inline()
    with PyMWExecutor(interface, journal=path) as pool:
        assert list(pool.map(fail_on, [5, 6], [0, 0])) == [5, 6]
    assert interface.executed == []


def test_pymw_journal_summarises_a_journal(tmp_path):
    path = tmp_path / "run.db"
    run_once(path, fail_on, [(1, 2), (2, 2)])
    out = subprocess.run([sys.executable, "-m", "pymw_core", "journal", str(path)],
                         capture_output=True, text=True, env=clean_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert "1 finished, 1 failed" in out.stdout
    assert "ValueError: bad input 2" in out.stdout
    out = subprocess.run([sys.executable, "-m", "pymw_core", "journal", "--json", str(path)],
                         capture_output=True, text=True, env=clean_env(), timeout=60)
    import json
    summary = json.loads(out.stdout)
    assert summary["states"]["finished"] == 1 and summary["states"]["failed"] == 1
    assert summary["errors"] == [{"error": "ValueError: bad input 2", "tasks": 1}]
    assert summary["runs"][0]["status"] == "ended"


# -- refusals ---------------------------------------------------------------------------------


def test_a_file_that_is_not_a_journal_is_refused_unchanged(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("my notes\n" * 100)
    foreign = tmp_path / "app.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    for path, says in ((text, "not an SQLite database"), (foreign, "not a PyMW journal")):
        before = path.read_bytes()
        interface = Inline()
        with pytest.raises(JournalError, match=says):
            Master(interface, journal=path)
        assert path.read_bytes() == before
        assert interface.cleanups == 1  # the interface built for it was cleaned up
        with pytest.raises(JournalError, match=says):
            open_reader(path)
        out = subprocess.run([sys.executable, "-m", "pymw_core", "journal", str(path)],
                             capture_output=True, text=True, env=clean_env(), timeout=60)
        assert out.returncode == 2 and says in out.stderr
    assert sorted(os.listdir(tmp_path)) == ["app.db", "notes.txt"]  # no lock left behind


def test_a_journal_of_another_program_is_refused_unless_named(tmp_path):
    path = tmp_path / "run.db"
    run_once(path, square, [(1,)], journal_program="analysis-a")
    before = path.read_bytes()
    with pytest.raises(JournalError, match="another program"):
        Master(Inline(), journal=path, journal_program="analysis-b")
    assert path.read_bytes() == before
    results, ran = run_once(path, square, [(1,)], journal_program="analysis-a")
    assert results == [1] and ran.executed == []


def test_a_second_live_master_on_one_journal_is_refused_at_once(tmp_path):
    path = tmp_path / "run.db"
    with Master(Inline(), journal=path):
        with pytest.raises(JournalError, match="in use by a live master"):
            Master(Inline(), journal=path)
    Master(Inline(), journal=path).close()  # free again once the first closed


def test_bad_resume_value_is_refused(tmp_path):
    with pytest.raises(JournalError, match="resume must be one of"):
        Master(Inline(), journal=tmp_path / "run.db", resume="some")


def test_the_config_file_names_the_journal(tmp_path, monkeypatch):
    config = tmp_path / "pymw.toml"
    config.write_text(f'journal = "{tmp_path / "cfg.db"}"\nresume = "all"\n')
    monkeypatch.setenv("PYMW_CONFIG", str(config))
    run_once(None, square, [(3,)])
    assert rows(tmp_path / "cfg.db", "SELECT state FROM tasks") == [("finished",)]
    assert "\"resume\": \"all\"" in rows(tmp_path / "cfg.db", "SELECT settings FROM runs")[0][0]


def _root_mount(where, *options):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "none", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def test_a_read_only_place_is_a_clear_error_at_master(tmp_path):
    where = tmp_path / "ro"
    _root_mount(where, "ro", "size=1m")
    try:
        with pytest.raises(JournalError, match="read-only"):
            Master(Inline(), journal=where / "run.db")
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_is_a_clear_error_at_master(tmp_path):
    where = tmp_path / "full"
    _root_mount(where, "size=64k")
    try:
        try:
            with open(where / "filler", "wb") as fh:  # fill it up
                while True:
                    fh.write(b"x" * 4096)
                    fh.flush()
        except OSError:
            pass
        with pytest.raises(JournalError, match="full|space"):
            Master(Inline(), journal=where / "run.db")
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_a_disk_that_fills_mid_run_is_a_logged_error_not_a_lost_run(tmp_path, caplog):
    """The writer process answers its failed commit; the master logs it once and the run
    goes on (every result handed out, no wait on a commit that will never come)."""
    where = tmp_path / "fills"
    _root_mount(where, "size=512k")
    try:
        with Master(Inline(), journal=where / "run.db") as master:
            assert master.get_result(master.submit_task(square, (2,)))[1] == 4
            try:
                with open(where / "filler", "wb") as fh:  # fill up what is left
                    while True:
                        fh.write(b"x" * 4096)
                        fh.flush()
            except OSError:
                pass
            tasks = [master.submit_task(read_file, (str(where / "filler"),))
                     for _ in range(3)]  # results of half a megabyte each
            sizes = [len(master.get_result(task)[1]) for task in tasks]
        assert min(sizes) > 100_000
        assert caplog.text.count("cannot be written any more") == 1
        assert "full" in caplog.text
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_readers_see_a_consistent_journal_while_a_master_writes(tmp_path):
    path = tmp_path / "run.db"
    stop = threading.Event()
    seen = []

    def read():
        while not stop.is_set():
            conn = open_reader(path)
            seen.append(conn.execute("SELECT count(*) FROM tasks t LEFT JOIN results r "
                                     "ON r.task = t.id WHERE t.state = 'finished' AND "
                                     "r.task IS NULL").fetchone()[0])
            conn.close()

    with Master(Inline(), journal=path) as master:
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        for i in range(200):
            master.get_result(master.submit_task(square, (i,)))
        stop.set()
        reader.join(30)
    assert seen and set(seen) == {0}  # a finished task always has its result row


# -- re-attaching: the hook's plumbing, with a toy batch interface ------------------------------

# A "batch system" of files: execute_task leaves a request file (a job) and records its
# name as the handle; whoever runs jobs writes a reply beside it. The first master is a
# real program, SIGKILLed with its jobs still queued; the jobs then "run" (here, in the
# test) and a second master on the same journal collects their replies.
JOBS_PROGRAM = '''
import os, pickle, sys, time, uuid
from pymw_core import Master
from pymw_core.unpack import deliver

def marked(name, x):
    open(os.path.join(os.environ["MARKS"], f"{x}-{uuid.uuid4().hex}"), "w").close()
    return x * 10

class FileJobs:
    """Requests as files in ``folder``; replies are read back when present."""
    def __init__(self, folder, run=None):
        self.folder, self.run = folder, run

    def execute_task(self, task, worker):
        job = uuid.uuid4().hex
        with open(os.path.join(self.folder, job + ".job"), "wb") as fh:
            pickle.dump(task.payload.message(task.id), fh)
        task.record_handle({"job": job})
        if self.run is not None:
            self.run(self.folder, job)
            self.reattach_task(task, {"job": job})

    def reattach_task(self, task, handle):
        reply = os.path.join(self.folder, handle["job"] + ".reply")
        if not os.path.exists(reply):
            return False
        with open(reply, "rb") as fh:
            deliver(task, pickle.load(fh))
        return True

def run_job(folder, job):
    """What the batch system does: run one request file, write its reply."""
    from pymw_core.worker import Runtime

    runtime = Runtime(chdir=False)
    try:
        with open(os.path.join(folder, job + ".job"), "rb") as fh:
            reply = runtime.run(pickle.load(fh))
    finally:
        runtime.close()
    with open(os.path.join(folder, job + ".reply"), "wb") as fh:
        pickle.dump(reply, fh)

if __name__ == "__main__":
    folder, journal, step = sys.argv[1:4]
    if step == "run-jobs":  # the batch system, after the master died
        for job in sys.argv[4:]:
            run_job(folder, job)
        sys.exit(0)
    interface = FileJobs(folder, run=run_job if step == "second" else None)
    with Master(interface, journal=journal, journal_program="jobs") as m:
        tasks = [m.submit_task(marked, ("n", x)) for x in range(6)]
        print("submitted", flush=True)
        if step == "first":
            time.sleep(3600)
        print("results", *[m.get_result(t)[1] for t in tasks], flush=True)
'''


def test_a_new_master_collects_work_a_killed_one_left_running(tmp_path):
    import signal

    from pymw_testing import read_line

    program = tmp_path / "jobs_program.py"
    program.write_text(JOBS_PROGRAM)
    folder, marks = tmp_path / "jobs", tmp_path / "marks"
    folder.mkdir()
    marks.mkdir()
    path = tmp_path / "run.db"
    env = clean_env(MARKS=str(marks))
    child = subprocess.Popen([sys.executable, str(program), str(folder), str(path), "first"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, cwd=tmp_path)
    try:
        assert read_line(child.stdout, 60, "the first master to submit") == "submitted\n"
        jobs = wait_until_jobs(folder, 6)
        wait_for_handles(path, 6)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    # The batch system runs four of the six jobs after the master died; two never ran.
    def step(*args):
        done = subprocess.run([sys.executable, str(program), str(folder), str(path), *args],
                              capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done

    step("run-jobs", *jobs[:4])
    second = step("second")
    # Seen once in CI (3.13): status 0 with `submitted` as the last line. Quote it all.
    assert second.stdout.splitlines()[-1] == "results " + " ".join(
        str(x * 10) for x in range(6)), f"stdout:\n{second.stdout}\nstderr:\n{second.stderr}"
    runs = sorted(int(name.split("-")[0]) for name in os.listdir(marks))
    assert runs == list(range(6))  # each task ran once in all
    # Two found nothing to collect (their jobs never ran): submitted anew, said so.
    assert rows(path, "SELECT count(*) FROM attempts WHERE run = 2 AND detail = "
                      "'not re-attached: submitted anew'")[0][0] == 2
    assert rows(path, "SELECT count(*) FROM tasks WHERE state = 'finished'")[0][0] == 6


def wait_until_jobs(folder, count):
    from pymw_testing import wait_until

    found = wait_until(lambda: len(os.listdir(folder)) >= count and os.listdir(folder), 30,
                       f"{count} job files")
    return sorted(name[:-4] for name in found if name.endswith(".job"))


def wait_for_handles(path, count):
    from pymw_testing import wait_until

    wait_until(lambda: path.exists() and rows(path, "SELECT count(*) FROM handles")[0][0]
               >= count, 30, f"{count} handles in the journal")


# -- the writer process ------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import os, sys, time
    from pymw_core.journal import Journal

    journal = Journal(sys.argv[1], program="p", interface="local", settings={})
    for i in range(1, 11):  # queued, not ended: the writer holds them (journal_writer._HOLD)
        journal.submitted(journal.entry(i, f"key{i}", "f", None), time.time())
    journal.sync()
    print(journal._writer.pid, flush=True)
    if sys.argv[2] == "close":
        journal.close()
        print("closed", flush=True)
    time.sleep(600)
""")


def _holder(tmp_path, then):
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "run.db"), then],
                            stdout=subprocess.PIPE, text=True, env=clean_env(), cwd=tmp_path,
                            start_new_session=True)


def test_a_sigkilled_masters_writer_commits_what_it_was_sent_and_hands_the_lock_over(
        tmp_path):
    """The writer of a master SIGKILLed writes the tasks it held, ends, and leaves the lock
    to the next master, which is let in at once (not refused as "in use")."""
    from pymw_testing import read_line, wait_dead

    child = _holder(tmp_path, "kill")
    try:
        writer = int(read_line(child.stdout, 60, "the writer's pid"))
        assert rows(tmp_path / "run.db", "SELECT count(*) FROM tasks") == [(0,)]  # held
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    # At once, while the dead master's writer may still be at work: let in, not refused.
    with Master(Inline(), journal=tmp_path / "run.db", journal_program="p") as master:
        assert master.get_result(master.submit_task(square, (3,)))[1] == 9
    wait_dead([writer], 30, "the dead master's writer process")
    assert rows(tmp_path / "run.db", "SELECT count(*) FROM tasks WHERE run = 1 AND state = "
                                     "'queued'") == [(10,)]
    assert rows(tmp_path / "run.db", "SELECT ended IS NULL FROM runs ORDER BY id") == [
        (1,), (0,)]  # the dead master's run is not marked ended by its writer


def test_a_live_master_keeps_its_journal_while_its_writer_ends_with_it(tmp_path):
    """A second master is still refused while the first lives, and the writer of a master
    that closed has ended (the master reaped it)."""
    from pymw_testing import alive, read_line

    child = _holder(tmp_path, "close")
    try:
        writer = int(read_line(child.stdout, 60, "the writer's pid"))
        assert read_line(child.stdout, 60, "the journal to close") == "closed\n"
        assert not alive(writer)
        assert rows(tmp_path / "run.db", "SELECT count(*) FROM tasks") == [(10,)]
    finally:
        child.kill()
        child.wait(30)
    child = _holder(tmp_path, "keep")
    try:
        read_line(child.stdout, 60, "the writer's pid")
        with pytest.raises(JournalError, match="in use by a live master"):
            Master(Inline(), journal=tmp_path / "run.db", journal_program="p")
    finally:
        child.kill()
        child.wait(30)


def test_a_writer_that_cannot_start_is_a_clear_error_at_master(tmp_path, monkeypatch):
    """An interpreter that is not Python (``sys.executable`` of an embedding program):
    refused at Master(), saying so, and the journal is free for the next master."""
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(JournalError, match=r"writer process \(/bin/false .*could not "
                                           r"start: it ended at once \(exit status 1\)"):
        Master(Inline(), journal=tmp_path / "run.db")
    monkeypatch.undo()
    with Master(Inline(), journal=tmp_path / "run.db") as master:
        assert master.get_result(master.submit_task(square, (5,)))[1] == 25


def test_a_writer_that_dies_is_a_logged_error_not_a_lost_run(tmp_path, caplog):
    """The run goes on (no hang in get_result) and the log says the journal stopped."""
    path = tmp_path / "run.db"
    with Master(Inline(), journal=path) as master:
        assert master.get_result(master.submit_task(square, (2,)))[1] == 4
        writer = master._journal._writer
        writer.kill()
        writer.wait(30)
        tasks = [master.submit_task(square, (i,)) for i in range(5)]
        assert [master.get_result(t)[1] for t in tasks] == [i * i for i in range(5)]
    assert "cannot be written any more" in caplog.text
    assert f"writer process (pid {writer.pid}) ended unexpectedly" in caplog.text
    assert rows(path, "SELECT state FROM tasks WHERE id = 1") == [("finished",)]


def test_ctrl_c_to_the_process_group_leaves_the_writer_to_finish(tmp_path):
    """SIGINT to the whole group (a terminal's Ctrl-C): the writer ignores it; the master's
    KeyboardInterrupt closes the journal, which records the run's end."""
    from pymw_testing import read_line, wait_dead

    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent("""
        import signal, sys, time
        from pymw_core import Master

        # As in a terminal: a suite started in the background inherits SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)

        def nap(x):
            time.sleep(x)

        with Master("local", num_workers=1, journal=sys.argv[1]) as master:
            master.submit_task(nap, (60,))
            print(master._journal._writer.pid, flush=True)
            time.sleep(600)
    """))
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run.db")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=clean_env(), cwd=tmp_path, start_new_session=True)
    try:
        writer = int(read_line(child.stdout, 60, "the writer's pid"))
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert "KeyboardInterrupt" in err
    wait_dead([writer], 30, "the writer process")
    assert rows(tmp_path / "run.db", "SELECT ended IS NOT NULL FROM runs") == [(1,)]
    assert rows(tmp_path / "run.db", "SELECT state FROM tasks") == [("cancelled",)]
