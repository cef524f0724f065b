"""A private HTCondor pool on 127.0.0.1 for the condor interface's tests (see pool.py)."""

from __future__ import annotations

import re

import pytest
from pymw_testing import masters, require

from condor.pool import CondorPool, missing_requirements


@pytest.fixture(scope="session")
def condor_pool():
    """One pool for the whole session; CONDOR_CONFIG points the bindings at it."""
    reason = missing_requirements()
    require(not reason, reason)
    try:
        import htcondor2  # noqa: F401 - present, or the condor tests cannot run
    except ImportError:
        require(False, "the htcondor package (htcondor2 bindings) is not installed")
    pool = CondorPool()
    pool.start()
    try:
        with pool.as_client():
            yield pool
    finally:
        pool.stop()


@pytest.fixture
def job_dir(condor_pool, request):
    """A directory the job owner (uid 1000) can write, visible inside the pool's chroot."""
    return condor_pool.make_job_dir(re.sub(r"\W", "_", request.node.name)[:80])


@pytest.fixture
def make_master(condor_pool, job_dir):
    """``make_master(**options)``: a condor Master on the test pool, closed after the test."""
    with masters("condor", python=condor_pool.python_for_jobs(), work_dir=job_dir) as make:
        yield make

