"""A private one-node Slurm cluster with munge on 127.0.0.1 for the slurm tests (cluster.py)."""

from __future__ import annotations

import os
import re

import pytest
from pymw_testing import masters, require

from slurm.cluster import SlurmCluster, missing_requirements


@pytest.fixture(scope="session")
def slurm_cluster():
    """One cluster for the whole session; SLURM_CONF points Slurm's commands at it."""
    reason = missing_requirements()
    require(not reason, reason)
    cluster = SlurmCluster()
    cluster.start()
    try:
        with cluster.as_client():
            yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def work_dir(slurm_cluster, request):
    """A work_dir of the test's own (jobs run as root on this host: any path is shared)."""
    path = os.path.join(slurm_cluster.run_dir, "work", re.sub(r"\W", "_", request.node.name)[:80])
    os.makedirs(path)
    return path


@pytest.fixture
def make_master(slurm_cluster, work_dir):
    """``make_master(**options)``: a slurm Master on the test cluster, closed after the test."""
    with masters("slurm", work_dir=work_dir) as make:
        yield make
