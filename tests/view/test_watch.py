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
from pymw_testing import clean_env, wait_until

from view.journals import sample

WATCH = [sys.executable, "-m", "pymw_core", "watch"]


def watch(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([*WATCH, *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_env())


class Feeder:
    """Plays a master: heartbeats and finishes a queued task every ``step`` seconds, then
    ends the run when told to (or never, when it is killed: heartbeats stop)."""

    def __init__(self, path, step: float = 0.3) -> None:
        self.path, self.step = path, step
        self.stop = threading.Event()
        self.end_run = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="feeder")
        self.thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(str(self.path), isolation_level=None)
        try:
            while not self.stop.wait(self.step):
                now = time.time()
                conn.execute("BEGIN")
                conn.execute("UPDATE runs SET heartbeat = ?", (now,))
                row = conn.execute("SELECT id FROM tasks WHERE state = 'queued' LIMIT 1"
                                   ).fetchone()
                if row:
                    conn.execute("UPDATE tasks SET state = 'finished', ended = ?, attempts = 1"
                                 " WHERE id = ?", (now, row[0]))
                    conn.execute("INSERT INTO attempts (task, number, run, worker, host,"
                                 " started, ended, outcome) VALUES (?, 1, 1, 'local-2',"
                                 " 'node1', ?, ?, 'ok')", (row[0], now - self.step, now))
                conn.execute("COMMIT")
            if self.end_run:
                conn.execute("UPDATE runs SET ended = ?", (time.time(),))
        finally:
            conn.close()

    def close(self, end_run: bool = False) -> None:
        self.end_run = end_run
        self.stop.set()
        self.thread.join(30)


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
    sample(db, ended=False, now=time.time() - 120)
    done = watch(str(db))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "master gone  queued 5  running 2  finished 37  failed 3" in done.stdout
    assert "master gone: no heartbeat since" in done.stdout


def test_once_and_bad_input(tmp_path):
    db = tmp_path / "run.db"
    sample(db, ended=False)
    done = watch("--once", str(db))
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
    sample(db, ended=False)
    feeder = Feeder(db)
    proc = subprocess.Popen([*WATCH, "--interval", "0.2", str(db)], stdout=subprocess.PIPE,
                            text=True, env=clean_env())
    try:
        wait_until(lambda: counts(db).get("queued", 0) == 0, 30, "the feeder to finish the "
                   "queued tasks")
        feeder.close(end_run=True)
        out, _ = proc.communicate(timeout=30)
    finally:
        feeder.close()
        proc.kill()
        proc.wait(30)
    assert proc.returncode == 0
    lines = out.splitlines()
    finished = [int(m.group(1)) for m in re.finditer(r"finished (\d+)", out)]
    assert finished[0] < finished[-1] == 42, out
    assert lines[-1].startswith("the run has ended")


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
    """The view shows the journal's counts as the run goes, then leaves on q or Ctrl-C
    with the terminal as it was: line editing and echo back on, the cursor shown."""
    db = tmp_path / "run.db"
    sample(db, ended=False)
    feeder = Feeder(db, step=0.5)
    try:
        _start_view(tmux, db)

        def agrees() -> bool:
            want = counts(db)
            line = _counts_line(tmux.screen())
            return line and all(f"{s} {want.get(s, 0)} " in line + " "
                                for s in ("queued", "running", "finished", "failed"))

        wait_until(lambda: "PyMW run 1" in tmux.screen(), 30, "the live view to draw")
        wait_until(agrees, 30, "the view's counts to match the journal's")
        screen = tmux.screen()
        assert "running" in screen.splitlines()[0]
        assert "task 41 simulate.step" in screen and "local-0" in screen
        assert "ValueError: bad input 29" in screen and "q quits" in screen
        assert tmux("display", "-p", "-t", "view", "#{cursor_flag}").strip() == "0"
        tmux("send-keys", "-t", "view", key)
        wait_until(lambda: f"EXIT={code}" in tmux.screen(), 30, f"the view to leave on {key}")
        restored = wait_until(lambda: re.search(r"EXIT=\d+\s+(\S.*)", tmux.screen()), 30,
                              "stty's report")
        assert restored.group(1).split() == ["icanon", "echo"], restored.group(1)
        assert tmux("display", "-p", "-t", "view", "#{cursor_flag}").strip() == "1"
    finally:
        feeder.close()


def test_live_view_ends_with_the_run(tmp_path, tmux):
    db = tmp_path / "run.db"
    sample(db, ended=False)
    feeder = Feeder(db, step=0.3)
    try:
        _start_view(tmux, db, "--interval", "0.3")
        wait_until(lambda: "PyMW run 1" in tmux.screen(), 30, "the live view to draw")
        feeder.close(end_run=True)
        wait_until(lambda: "EXIT=0" in tmux.screen(), 30, "the view to end with the run")
        screen = tmux.screen()
        assert "the run has ended" in screen
        assert "icanon echo" in screen
    finally:
        feeder.close()
