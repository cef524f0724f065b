"""``pymw watch``: plain lines when stdout is not a terminal, and the live view driven in
a real terminal (tmux), against journals of a running, a finished and a dead run.

Seen to fail: with the view's cbreak mode left on at exit, the tmux test's ``stty``
line shows ``-icanon``; with the ``q`` key ignored, it times out waiting for EXIT=0;
with the heartbeat check removed, the dead run's watch never ends (deadline hit).
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from pymw_testing import clean_env, read_line, wait_until

from view.journals import dead_sample, live_sample, sample, written

WATCH = [sys.executable, "-m", "pymw_core", "watch"]


def watch(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([*WATCH, *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_env())


class Feeder:
    """Plays the rest of a live sample's run through its writer: every ``step`` seconds
    one queued task runs on local-2 and finishes; then the run ends if told to."""

    def __init__(self, writer, pending, step: float = 0.3) -> None:
        self.writer, self.pending, self.step = writer, list(pending), step
        self.stop = threading.Event()
        self.end_run = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="feeder")
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.step):
            if self.pending:
                entry = self.pending.pop(0)
                now = time.time()
                attempt = self.writer.start(entry, "local-2", now - self.step / 2)
                self.writer.end(entry, attempt, now, value=1)

    def close(self, end_run: bool = False) -> None:
        self.stop.set()
        self.thread.join(30)
        if end_run:
            self.writer.close()


def counts(path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT state, count(*) FROM tasks GROUP BY state"))
    finally:
        conn.close()


def test_finished_run_plain(tmp_path):
    db = tmp_path / "run.db"
    sample(db, ended=True)
    done = watch(str(db))
    assert done.returncode == 0, done.stderr
    first, last = done.stdout.splitlines()
    assert "ended  queued 0  running 0  finished 37  failed 3  cancelled 0" in first
    assert "last failure: task 30 ValueError: bad input 29" in first
    assert last.startswith("the run has ended")
    assert "\x1b" not in done.stdout  # no escapes when stdout is not a terminal


def test_dead_master_plain(tmp_path):
    db = tmp_path / "run.db"
    dead_sample(db)
    done = watch(str(db))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "master gone  queued 5  running 2  finished 37  failed 3" in done.stdout
    assert "master gone: no heartbeat since" in done.stdout


def test_a_master_killed_on_this_host_is_gone_at_once(tmp_path):
    """Its heartbeat is fresh (under a second old), so only its missing process can say
    so; seen to fail (``running``, exit 0) with the pid check removed from Run.status."""
    db = tmp_path / "run.db"
    program = (
        "import sys, time\n"
        "from pymw_core.journal import Journal\n"
        "Journal(sys.argv[1], program='p', interface='local', settings={})\n"
        "print('open', flush=True)\n"
        "time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", program, str(db)], env=clean_env(),
                             stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(child.stdout, 60, "the journal opened in the child") == "open\n"
    finally:
        child.kill()
        child.wait(30)
    done = watch("--once", str(db))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "master gone" in done.stdout


def test_once_and_bad_input(tmp_path):
    db = tmp_path / "run.db"
    writer, _ = live_sample(db)
    try:
        done = watch("--once", str(db))
    finally:
        writer.close()
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1
    assert "running  queued 5  running 2  finished 37" in done.stdout
    assert "workers 2 busy" in done.stdout
    missing = watch(str(tmp_path / "nothing.db"))
    assert missing.returncode == 2 and "nothing.db" in missing.stderr
    (tmp_path / "text.db").write_text("hello")
    text = watch(str(tmp_path / "text.db"))
    assert text.returncode == 2 and "not a PyMW journal" in text.stderr
    assert (tmp_path / "text.db").read_text() == "hello"
    assert watch("--interval", "0", str(db)).returncode == 2


def test_follows_a_live_run_in_plain_lines(tmp_path):
    """Lines keep coming while the run goes, and the view ends when the run does."""
    db = tmp_path / "run.db"
    writer, info = live_sample(db)
    feeder = Feeder(writer, info["pending"])
    proc = subprocess.Popen([*WATCH, "--interval", "0.2", str(db)], stdout=subprocess.PIPE,
                            text=True, env=clean_env())
    try:
        wait_until(lambda: counts(db).get("queued", 0) == 0, 30, "the feeder to finish the "
                   "queued tasks")
        feeder.close(end_run=True)
        out, _ = proc.communicate(timeout=30)
    finally:
        feeder.close(end_run=True)
        proc.kill()
        proc.wait(30)
    assert proc.returncode == 0
    lines = out.splitlines()
    finished = [int(m.group(1)) for m in re.finditer(r"finished (\d+)", out)]
    assert finished[0] < finished[-1] == 42, out
    assert lines[-1].startswith("the run has ended")


PROGRAM = """
import sys, time
from pymw_core import Master

def work(i):
    time.sleep(0.4)
    if i % 9 == 4:
        raise ValueError(f"bad input {i}")
    return i

with Master("local", num_workers=2, journal=sys.argv[1]) as master:
    tasks = [master.submit_task(work, (i,)) for i in range(int(sys.argv[2]))]
    for task in tasks:
        try:
            master.get_result(task)
        except ValueError:
            pass
"""


def start_run(tmp_path, tasks: int) -> tuple[subprocess.Popen, str]:
    """A real master with a journal, running slow tasks on two local workers."""
    program = tmp_path / "slow.py"
    program.write_text(PROGRAM)
    db = str(tmp_path / "run.db")
    proc = subprocess.Popen([sys.executable, str(program), db, str(tasks)], env=clean_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def begun() -> bool:
        try:
            return bool(counts(db).get("running"))
        except sqlite3.Error:
            return False  # not created yet
    wait_until(begun, 60, "the master to start running tasks")
    return proc, db


def _start_view(tmux, db, *extra: str) -> None:
    shell = (f"{' '.join(WATCH)} {' '.join(extra)} {db}; echo EXIT=$?; "
             "stty -a | tr ' ' '\\n' | grep -x -- '-\\?\\(icanon\\|echo\\)' | tr '\\n' ' ';"
             " echo; sleep 600")
    env = clean_env(TERM="xterm-256color")
    tmux("new-session", "-d", "-s", "view", "-x", "110", "-y", "32",
         *[a for k, v in env.items() if k in ("PATH", "TMPDIR", "PYMW_TEST_SESSION", "TERM",
                                              "HOME") for a in ("-e", f"{k}={v}")],
         shell)


def _counts_line(screen: str) -> str:
    for line in screen.splitlines():
        if line.startswith("tasks "):
            return line
    return ""


@pytest.mark.parametrize("key, code", [("q", 0), ("C-c", 130)])
def test_live_view_in_tmux(tmp_path, tmux, key, code):
    """A real run's counts on screen as they go, then q or Ctrl-C leaves with the
    terminal as it was: line editing and echo back on, the cursor shown."""
    proc, db = start_run(tmp_path, 40)
    try:
        _start_view(tmux, db)

        def agrees() -> bool:
            want = counts(db)
            line = _counts_line(tmux.screen())
            return bool(line) and want.get("finished", 0) > 0 and all(
                f"{s} {want.get(s, 0)} " in line + " "
                for s in ("queued", "running", "finished", "failed"))

        wait_until(lambda: "PyMW run 1" in tmux.screen(), 30, "the live view to draw")
        wait_until(agrees, 30, "the view's counts to match the journal's during the run")
        wait_until(lambda: "ValueError: bad input 4" in tmux.screen(), 30,
                   "the first failure on screen")
        screen = tmux.screen()
        assert "running" in screen.splitlines()[0] and "slow.py" in screen.splitlines()[0]
        assert re.search(r"local/w\d+ \(pid \d+\) .* work ", screen), screen
        assert "q quits" in screen
        assert tmux("display", "-p", "-t", "view", "#{cursor_flag}").strip() == "0"
        tmux("send-keys", "-t", "view", key)
        wait_until(lambda: f"EXIT={code}" in tmux.screen(), 30, f"the view to leave on {key}")
        restored = wait_until(lambda: re.search(r"EXIT=\d+\s+(\S.*)", tmux.screen()), 30,
                              "stty's report")
        assert restored.group(1).split() == ["icanon", "echo"], restored.group(1)
        assert tmux("display", "-p", "-t", "view", "#{cursor_flag}").strip() == "1"
        assert proc.poll() is None, "the view must not touch the run"
    finally:
        proc.wait(120)
    assert proc.returncode == 0, proc.stderr.read()


def test_live_view_ends_with_the_run(tmp_path, tmux):
    proc, db = start_run(tmp_path, 12)
    try:
        _start_view(tmux, db, "--interval", "0.3")
        wait_until(lambda: "EXIT=0" in tmux.screen(), 60, "the view to end with the run")
        restored = wait_until(lambda: re.search(r"EXIT=0\s+(\S.*)", tmux.screen()), 30,
                              "stty's report")
        assert restored.group(1).split() == ["icanon", "echo"], restored.group(1)
        screen = tmux.screen()
        assert "the run has ended" in screen
        assert "finished 11  failed 1" in screen
    finally:
        proc.wait(120)


def test_counts_without_scanning_the_biggest_state(tmp_path):
    """The view derives its biggest state from the total; it must equal a full count
    while tasks are added, change state, and arrive out of id order. Seen to fail with
    the new tasks left out of the total (queued came out 5 short), and with the total
    counted past the highest id seen (the late task was missed)."""
    from pymw_core.view import reading
    from pymw_core.view.watch import Follower

    db = tmp_path / "run.db"
    writer, info = live_sample(db)
    conn = reading.open_journal(str(db))
    try:
        follower = Follower(conn)
        follower.take()
        for i, entry in enumerate(info["pending"]):
            attempt = writer.start(entry, "local-2", time.time())
            writer.end(entry, attempt, time.time(), value=i)
            for _ in range(i + 1):  # new tasks too, past the highest id seen
                writer.task("simulate.more", time.time())
            writer.sync()
            snap = follower.take()
            assert snap.counts == reading.counts(conn), i
        written(db, 47 + 15)
        snap = follower.take()
        assert snap.counts == reading.counts(conn)
        assert snap.counts["finished"] == 42 and snap.counts["queued"] == 15
        # A task that has not ended is written late, after a later one that ended at once:
        # a lower id arrives after a higher one was counted.
        writer.task("simulate.late", time.time())
        quick = writer.task("simulate.quick", time.time())
        writer.end(quick, writer.start(quick, "local-2", time.time()), time.time(), value=0)
        writer.sync()
        follower.take()
        written(db, 47 + 15 + 2)
        snap = follower.take()
        assert snap.counts == reading.counts(conn)
        assert snap.counts["queued"] == 16 and snap.counts["total"] == 64
    finally:
        conn.close()
        writer.close()
