"""The interface contract kit (pymw_core.testing) against ``slurm``, on the test cluster.

Jobs run on this host, as root: the work_dir is the kit's shared directory and must
hold nothing of the run after close(). Each check submits few tasks (an array element
costs seconds to start). Slurm, not the interface, decides how many elements run at
once, so no concurrency is declared.
"""

from __future__ import annotations

import pytest

from pymw_core.testing import InterfaceContract, Target

# A batch system on a loaded machine may keep a job pending for minutes: a wait on the
# master fails after 180 s here, not the default 60 s (tests/pymw_testing.py).
pytestmark = [pytest.mark.slurm, pytest.mark.wait_limit(180)]


class TestSlurmContract(InterfaceContract):
    @pytest.fixture
    def pymw_target(self, slurm_cluster, work_dir):
        return Target(
            "slurm",
            {"work_dir": work_dir},
            shared_dir=work_dir,
            watch_dirs=[work_dir],
            startup=40,  # an array element costs seconds to start
            per_task=10,
            timeout=5,  # seconds of running: more than an element needs to start a task
            tasks=2,
        )
