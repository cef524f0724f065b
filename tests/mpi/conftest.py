"""Real Open MPI for the mpi interface's tests: ``mpiexec`` and mpi4py, nothing mocked.

Open MPI refuses to run as root unless told twice; the tests run as root in CI, so
the fixture says so for the tests' own processes (never for the user's shell).
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest
from pymw_testing import require


@pytest.fixture
def mpi(monkeypatch):
    """Skip (fail in CI) without mpiexec or mpi4py; allow root for Open MPI."""
    require(shutil.which("mpiexec") is not None,
            "mpiexec is not installed (apt-get install openmpi-bin libopenmpi-dev)")
    require(importlib.util.find_spec("mpi4py") is not None,
            "mpi4py is not installed (pip install mpi4py)")
    if os.geteuid() == 0:
        monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
        monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return shutil.which("mpiexec")
