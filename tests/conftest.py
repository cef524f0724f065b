"""Shared test set-up. Service fixtures live in each plugin's own conftest.py.

Two session-wide guarantees are enforced here, so they stay true:

- the suite tests what users install: ``pymw_core`` and the plugins must be imported
  from an installed wheel, never from the source tree;
- the suite leaves nothing behind: every process it started has ended and no
  ``pymw-*`` directory is left in its private temporary directory; a session ended
  abruptly (pytest-timeout, a signal) is cleaned up by a watch process;
- no test waits for ever on the master: each blocking ``get_result``, ``map``,
  ``as_completed`` and ``close(wait=True)`` of a test fails it after ``WAIT_LIMIT``
  seconds (or its ``wait_limit`` marker's), naming the wait.

And one per test: no PyMW setting from the environment that runs the suite
(``PYMW_INTERFACE``, ``PYMW_CONFIG``) reaches a test, whatever ran before it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import pytest
from pymw_testing import (
    SESSION_MARK,
    bounded_master_waits,
    processes_marked,
    release_watch,
    require_installed,
    set_test_deadline,
    set_wait_limit,
    wait_until,
    watch_session,
)

from pymw_core.master import _close_all

_MARK = SESSION_MARK
# PyMW's own settings: a user's shell must not steer the suite (tests set what they need).
_SETTINGS = ("PYMW_INTERFACE", "PYMW_CONFIG")


@pytest.fixture(scope="session", autouse=True)
def suite_leaves_nothing_behind(tmp_path_factory):
    """A private TMPDIR and a marker in the environment of every process the suite starts.

    Teardown runs after every other session fixture (this one is set up first), so
    the services the fixtures started are already stopped when it looks.
    """
    require_installed()
    private = tempfile.mkdtemp(prefix="suite-tmp-")
    os.chmod(private, 0o711)  # daemons the fixtures start (munged) need to traverse it
    saved = {key: os.environ.get(key) for key in ("TMPDIR", _MARK)}
    os.environ["TMPDIR"] = private
    os.environ[_MARK] = private
    tempfile.tempdir = None  # recomputed from TMPDIR
    watch = watch_session(private)
    try:
        with bounded_master_waits():
            yield private
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        tempfile.tempdir = None
        _close_all()  # what interpreter exit does for masters a test left open
        try:
            left = wait_until(lambda: not processes_marked(_MARK, private), 15,
                              "processes started by the suite to end", fail=False)
            leftovers = [] if left else processes_marked(_MARK, private)
            dirs = sorted(n for n in os.listdir(private) if n.startswith("pymw-"))
        finally:
            shutil.rmtree(private, ignore_errors=True)
        problems = []
        if leftovers:
            problems.append("processes still running after the suite: " + "; ".join(
                f"pid {pid}: {cmd}" for pid, cmd in leftovers))
            for pid, _ in leftovers:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
        if dirs:
            problems.append(f"directories left in the temp dir: {', '.join(dirs)}")
        release_watch(watch)
        assert not problems, "the suite left things behind: " + " | ".join(problems)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Tell run_child when pytest-timeout will end this test (its clock starts here too:
    setup, call and teardown), so a child is killed, and the test failed, before."""
    set_test_deadline(_pytest_timeout(item))
    try:
        return (yield)
    finally:
        set_test_deadline(None)


def _pytest_timeout(item) -> float | None:
    try:
        from pytest_timeout import _get_item_settings
        return _get_item_settings(item).timeout
    except Exception:  # another pytest-timeout version: its marker, else the ini value
        marker = item.get_closest_marker("timeout")
        if marker is not None and marker.args:
            return float(marker.args[0])
        try:
            value = item.config.getini("timeout")
        except ValueError:
            return None
        return float(value) if value else None


@pytest.fixture(autouse=True)
def wait_limit(request):
    """This test's limit on a blocking wait for the master (``@pytest.mark.wait_limit(s)``)."""
    marker = request.node.get_closest_marker("wait_limit")
    set_wait_limit(marker.args[0] if marker else None)
    yield
    set_wait_limit(None)


@pytest.fixture(autouse=True)
def pymw_log_level_restored():
    """``Master(loglevel=...)`` sets the process-wide ``pymw`` logger's level (PyMW 0.x's
    API): one test's choice must not hide another's log records."""
    logger = logging.getLogger("pymw")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(autouse=True)
def no_pymw_settings(monkeypatch):
    """Each test starts without PyMW's settings in the environment; it sets what it needs."""
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)
