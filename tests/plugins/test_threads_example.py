"""The guide's example interface, installed as a third party would be and used by name.

The test session installs it (``pip install -e tests/plugins/pymw_threads_example``);
``Master("threads-example")`` finds it through its ``pymw.interfaces`` entry point.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pytest
from pymw_testing import clean_env, require, wait_until

from pymw_core import (
    InterfaceError,
    Master,
    RemoteTraceback,
    TaskCancelledError,
    TaskTimeoutError,
)
from pymw_core.plugins import installed_interfaces

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(ROOT, "tests", "plugins", "pymw_threads_example")
GUIDE = os.path.join(ROOT, "docs", "writing-an-interface.md")
NAME = "threads-example"


@pytest.fixture(autouse=True)
def installed():
    require(NAME in installed_interfaces(),
            f"the example interface is not installed (pip install {PLUGIN})")


def square(x):
    return x * x


def chatty(word):
    print(f"hello {word}")
    print("to stderr", file=sys.stderr)
    return word.upper()


def explode(n):
    raise ValueError(f"bad value {n}")


def test_found_by_name_and_runs_tasks():
    with Master(NAME) as master:
        assert master.interface_name == NAME
        assert type(master.interface).__module__ == "pymw_threads_example.interface"
        assert list(master.map(square, range(20))) == [x * x for x in range(20)]
        task = master.submit_task(lambda a, b: a + b, (2, 3))
        assert master.get_result(task) == (task, 5)


def test_options_are_constructor_keywords():
    with Master(NAME, num_threads=3) as master:
        status = master.get_status()
        assert status["threads"] == 3
        assert status["idle"] == 3
    with pytest.raises(InterfaceError, match=r"no option 'num_thread'.*num_threads"):
        Master(NAME, num_thread=3)
    with pytest.raises(InterfaceError, match="num_threads must be a whole number"):
        Master(NAME, num_threads=0)


def test_options_from_the_config_file(tmp_path, monkeypatch):
    config = tmp_path / "pymw.toml"
    config.write_text(f'interface = "{NAME}"\n["{NAME}"]\nnum_threads = 4\n')
    monkeypatch.setenv("PYMW_CONFIG", str(config))
    monkeypatch.delenv("PYMW_INTERFACE", raising=False)
    with Master() as master:
        assert master.interface_name == NAME
        assert master.get_status()["threads"] == 4


def test_output_is_captured_per_task():
    with Master(NAME) as master:
        task = master.submit_task(chatty, ("world",))
        assert master.get_result(task)[1] == "WORLD"
        assert task.stdout == "hello world\n"
        assert task.stderr == "to stderr\n"


def test_task_exception_reaches_the_user_with_the_workers_traceback():
    with Master(NAME) as master:
        task = master.submit_task(explode, (7,))
        with pytest.raises(ValueError, match="bad value 7") as info:
            master.get_result(task)
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "in explode" in info.value.__cause__.tb
        # the worker survived its task's failure
        assert master.get_result(master.submit_task(square, (9,)))[1] == 81


def test_workers_are_matched_one_task_each_and_returned():
    with Master(NAME, num_threads=2) as master:
        tasks = [master.submit_task(square, (i,)) for i in range(30)]
        assert sorted(master.get_result(t)[1] for t in tasks) == sorted(i * i for i in range(30))
        assert {repr(t.worker) for t in tasks} <= {"<Worker thread-0>", "<Worker thread-1>"}
        status = master.get_status()
        assert status["tasks_done"] == 30
        assert status["idle"] == 2
        assert status["finished"] == 30


def test_close_stops_the_threads():
    master = Master(NAME, num_threads=2)
    workers = list(master.interface._workers)
    assert all(w.thread.is_alive() for w in workers)
    master.submit_task(square, (3,))
    master.close()
    assert not any(w.thread.is_alive() for w in workers)
    assert not [t for t in threading.enumerate() if t.name.startswith("pymw-thread-")]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pymw_core", *args], capture_output=True,
                          text=True, timeout=120, env=clean_env(), cwd=ROOT)


def test_pymw_lists_and_checks_it():
    listing = run_cli("interfaces")
    assert listing.returncode == 0
    assert re.search(r"^threads-example\s+pymw-threads-example\s+0\.1\.0\s+"
                     r"pymw_threads_example:ThreadInterface$", listing.stdout, re.MULTILINE)
    check = run_cli("check", "--interface", NAME)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "interface:      threads-example  (chosen by: --interface)" in check.stdout
    assert "all checks passed" in check.stdout


def test_an_example_runs_on_it_and_ignores_workers_with_a_note():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "monte_pi.py"), "--interface", NAME,
         "--workers", "3", "--samples", "40000"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "on the 'threads-example' interface" in proc.stdout
    assert "note: --workers applies to the local interface only" in proc.stderr


# -- the guide shows these files verbatim ---------------------------------------------------


def included_blocks(markdown: str) -> list[tuple[str, str]]:
    """``(path, code)`` for each fenced block preceded by ``<!-- include: PATH -->``."""
    pattern = re.compile(r"<!-- include: (\S+) -->\n```[a-z]*\n(.*?)```\n", re.DOTALL)
    return pattern.findall(markdown)


def test_the_guide_shows_the_example_verbatim():
    with open(GUIDE, encoding="utf-8") as fh:
        blocks = included_blocks(fh.read())
    paths = [path for path, _ in blocks]
    assert "tests/plugins/pymw_threads_example/pymw_threads_example/interface.py" in paths
    assert "tests/plugins/pymw_threads_example/pyproject.toml" in paths
    for path, code in blocks:
        with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
            assert code == fh.read(), f"docs/writing-an-interface.md is out of date for {path}"


def nap(seconds):
    time.sleep(seconds)
    return seconds


def test_without_stop_task_a_timed_out_task_fails_but_runs_on():
    with Master(NAME, num_threads=1) as master:
        slow = master.submit_task(nap, (0.6,), timeout=0.1)
        with pytest.raises(TaskTimeoutError, match="cannot stop it, so it runs on"):
            master.get_result(slow)
        assert master.get_status()["idle"] == 0  # its worker is still busy with it
        assert not slow.cancel()  # already ended
        after = master.submit_task(square, (4,))
        assert master.get_result(after)[1] == 16  # ran once the worker came back
        assert master.get_status()["tasks_done"] == 2


def test_without_stop_task_a_running_task_cannot_be_cancelled():
    with Master(NAME, num_threads=1) as master:
        running = master.submit_task(nap, (0.3,))
        queued = master.submit_task(nap, (0.3,))
        wait_until(lambda: running.state == "running" and not master.get_status()["idle"], 10,
                   "the first task to occupy the only thread")
        assert not running.cancel()
        assert queued.cancel()
        assert master.get_result(running)[1] == 0.3
        with pytest.raises(TaskCancelledError):
            master.get_result(queued)
