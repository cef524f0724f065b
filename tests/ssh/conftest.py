"""Real OpenSSH servers on 127.0.0.1 for the ssh interface's tests (see sshd.py).

One lab per session: two trusted servers (``host1``, ``host2``) behind an ssh_config file
with aliases, as a user's ``~/.ssh`` would have. Tests that kill, freeze or distrust a
server start their own with ``lab.add_server()``. The remote interpreter is this
Python's base interpreter run with ``-I``: no site-packages, no venv, nothing of PyMW
installed; the worker runtime has to come from the uploaded zip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from pymw_testing import masters, require

from ssh.sshd import SSHLab, sshd_available


def base_python() -> str:
    """The interpreter this venv was made from: the same version, without the venv."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """Two trusted sshd on 127.0.0.1 (``host1``, ``host2``); more on demand."""
    if not sshd_available():
        require(False, "OpenSSH's sshd is not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        require(False, "the sshd fixtures run as root (sshd needs /run/sshd and root's login)")
    lab = SSHLab(tmp_path_factory.mktemp("sshlab"))
    try:
        lab.add_server()
        lab.add_server()
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def remote_python() -> list[str]:
    """The remote interpreter: the base Python, isolated (-I) so nothing installed is seen."""
    return [base_python(), "-I"]


@pytest.fixture
def remote_dir(lab, request) -> Path:
    """Where the hosts keep the runtime and the runs: inside the lab, one per test."""
    return lab.dir / "remote" / request.node.name[:60]


@pytest.fixture
def make_master(lab, remote_python, remote_dir):
    """``make_master(**options)``: an ssh Master on the lab's hosts, closed after the test."""
    with masters("ssh", hosts=["host1", "host2"], ssh_config=str(lab.ssh_config),
                 python=remote_python, remote_dir=str(remote_dir), workers_per_host=2,
                 connect_timeout=5.0) as make:
        yield make
