"""Fixtures for the joblib backend's tests: local masters, and the ssh lab of tests/ssh.

The ssh fixtures are imported from tests/ssh/conftest.py, not copied. Only the remote
interpreter differs: the ssh tests use a bare Python to prove the runtime travels;
joblib's tasks need joblib and scikit-learn on the worker, as a real cluster node has
them installed, so here the remote interpreter is this venv's.
"""

from __future__ import annotations

import sys

import pytest
from ssh.conftest import lab, make_master, remote_dir  # noqa: F401  (shared fixtures)


@pytest.fixture(scope="session")
def remote_python() -> list[str]:
    """This venv's interpreter, isolated from the environment (-I) but with its packages."""
    return [sys.executable, "-I"]


@pytest.fixture(scope="session", autouse=True)
def registered():
    """``backend="pymw"`` works in every test, as after the user's one register() call."""
    from pymw_core import joblib_backend

    joblib_backend.register()
    return joblib_backend


@pytest.fixture
def local_master():
    """``local_master(**options)``: a local Master, closed after the test."""
    from pymw_core import Master

    masters = []

    def make(**options):
        options.setdefault("num_workers", 2)
        master = Master("local", **options)
        masters.append(master)
        return master

    yield make
    for master in masters:
        master.close()
