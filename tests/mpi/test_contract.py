"""The interface contract kit (pymw_core.testing) against ``mpi``: real mpiexec.

Three worker ranks: a killed rank is not replaced (an MPI job's ranks are fixed, see
docs/interfaces/mpi.md), and the kit's lost-worker check kills one rank per attempt
(two attempts) before it runs more tasks, so one rank must be left to run them.
"""

from __future__ import annotations

import pytest

from pymw_core.testing import InterfaceContract, Target


class TestMPIContract(InterfaceContract):
    @pytest.fixture
    def pymw_target(self, mpi):
        fixed = ("an MPI job's ranks are fixed: a rank that is killed (or stopped, for a "
                 "timeout or a cancel) is not replaced, so stopping one task per rank leaves none")
        # start_timeout below the kit's 12 s for a start: a start that slow fails with
        # the interface's own message (what mpiexec printed last) and ends its job itself.
        return Target("mpi", {"num_workers": 3, "start_timeout": 10}, concurrency=3, skip={
            "slots[lost_worker]": fixed, "slots[timeout]": fixed, "slots[cancel]": fixed})
