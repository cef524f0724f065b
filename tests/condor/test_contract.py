"""The interface contract kit (pymw_core.testing) against ``condor``, on the test pool.

Jobs run as uid 1000 inside the pool's chroot on this host: the job directory is the
kit's shared directory (the jobs see it at the same path) and must hold nothing of the
run after close(). Each check submits few jobs: a job costs seconds here. The pool,
not the interface, decides how many jobs run at once, so no concurrency is declared.
"""

from __future__ import annotations

import pytest

from pymw_core.testing import InterfaceContract, Target

# A batch system on a loaded machine may keep a job idle for minutes: a wait on the
# master fails after 180 s here, not the default 60 s (tests/pymw_testing.py).
pytestmark = [pytest.mark.condor, pytest.mark.wait_limit(180)]


class TestCondorContract(InterfaceContract):
    @pytest.fixture
    def pymw_target(self, condor_pool, job_dir):
        return Target(
            "condor",
            {"python": condor_pool.python_for_jobs(), "work_dir": job_dir},
            shared_dir=job_dir,
            watch_dirs=[job_dir],
            startup=40,  # a job costs seconds to be matched and to start its Python
            per_task=10,
            timeout=10,  # seconds of running: more than a job needs to start its Python
            tasks=2,
        )
