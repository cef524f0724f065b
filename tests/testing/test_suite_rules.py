"""The suite's own rules (tests/pymw_testing.py, tests/conftest.py) hold: a hung wait on
the master fails its test naming the wait, and an abrupt end of a session still stops
what it started."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from pymw_testing import Never, child_timeout, read_line, run_child, wait_dead, wait_until

from pymw_core import Master


def nothing():
    return None


@pytest.mark.wait_limit(1)
@pytest.mark.parametrize("how", ["get_result", "get_result_any", "map", "as_completed",
                                 "close_wait"])
def test_a_wait_that_hangs_fails_its_test_naming_the_wait(how):
    # Seen failing: with the guard off (conftest without bounded_master_waits) each of
    # these waited until pytest-timeout ended the whole session.
    master = Master(Never())
    try:
        task = master.submit_task(nothing)
        wait = {
            "get_result": lambda: master.get_result(task),
            "get_result_any": lambda: master.get_result(),
            "map": lambda: list(master.map(abs, [1])),
            "as_completed": lambda: list(master.as_completed([task])),
            "close_wait": lambda: master.close(wait=True),
        }[how]
        with pytest.raises(pytest.fail.Exception, match=r"did not return within 1 s"):
            wait()
    finally:
        master.close()


def test_the_guard_leaves_a_wait_that_ends_alone():
    # A result that comes is handed out as without the guard (no failure, same value).
    from pymw_testing import Inline

    with Master(Inline()) as master:
        assert master.get_result(master.submit_task(abs, (-3,)))[1] == 3
        assert list(master.map(abs, [-1, -2])) == [1, 2]


def test_a_child_past_its_deadline_is_killed_with_its_group_and_fails_the_test(tmp_path):
    # Seen failing: with subprocess.run(capture_output=True, timeout=2) instead, the
    # background sleep (holding the pipe) kept run() waiting after the kill, 60 s, and
    # nothing named what was running.
    pid_file = tmp_path / "pid"
    script = f"echo started; sleep 60 & echo $! > {pid_file}; wait"
    with pytest.raises(pytest.fail.Exception,
                       match=r"(?s)the sleeper did not end within 2 s.*started"):
        run_child(["bash", "-c", script], "the sleeper", 2)
    wait_dead([int(pid_file.read_text())], 10, "the sleeper's own child")


def test_a_child_never_outlives_what_pytest_timeout_leaves_the_test():
    # Seen failing: a helper timeout of 300 s (doc_examples' old one) is the whole of
    # pytest-timeout's 300 s; pytest-timeout then ended the session instead of the test.
    assert child_timeout(None) <= 300 - 30
    assert child_timeout(10**6) <= 300 - 30
    assert child_timeout(5) == 5


SESSION = textwrap.dedent("""
    import os, subprocess, sys
    sys.path.insert(0, sys.argv[2])
    from pymw_testing import SESSION_MARK, watch_session
    private = sys.argv[1]
    os.environ[SESSION_MARK] = private
    watch_session(private)
    child = subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL)  # a service
    open(os.path.join(private, "pymw-left"), "w").close()
    print(child.pid, flush=True)
    os._exit(1)                                   # as pytest-timeout's thread method ends it
""")


def test_an_abrupt_session_end_stops_its_processes_and_removes_its_temp_dir(tmp_path):
    # Seen failing: without the watch, the sleep outlived the session and the dir stayed.
    private = tmp_path / "suite-tmp"
    private.mkdir()
    tests_dir = os.path.dirname(os.path.abspath(__import__("pymw_testing").__file__))
    session = subprocess.Popen([sys.executable, "-c", SESSION, str(private), tests_dir],
                               stdout=subprocess.PIPE, text=True)
    try:
        child = int(read_line(session.stdout, 60, "the session to start its process"))
        session.wait(timeout=30)
    finally:
        session.kill()
        session.wait()
        session.stdout.close()
    wait_dead([child], 20, "the process of a session that ended abruptly")
    wait_until(lambda: not private.exists(), 20, "the session's temp dir to be removed")
