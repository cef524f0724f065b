"""The interface contract kit (pymw_core.testing) against ``ssh``, on the lab's real sshd.

One host with two workers: the processes run on this machine (the lab's sshd listen on
127.0.0.1), so the kit can see them end; the runtime zip stays cached in remote_dir on
purpose, so only the run's own directory under ``runs/`` must go.
"""

from __future__ import annotations

import pytest

from pymw_core.testing import InterfaceContract, Target

pytestmark = pytest.mark.ssh


class TestSSHContract(InterfaceContract):
    @pytest.fixture
    def pymw_target(self, lab, remote_python, remote_dir):
        return Target(
            "ssh",
            {
                "hosts": ["host1"],
                "ssh_config": str(lab.ssh_config),
                "python": remote_python,
                "remote_dir": str(remote_dir),
                "workers_per_host": 2,
                "connect_timeout": 5.0,
            },
            concurrency=2,
            watch_dirs=[str(remote_dir / "runs")],
        )
