"""The interface contract kit against the guide's example third-party interface.

Its workers are threads of the master's own process, which runs one task at a time:
the checks it cannot pass say why (as docs/writing-an-interface.md does). Its lack of
``stop_task`` makes the kit skip the timeout and cancel checks by itself.
"""

from __future__ import annotations

import pytest
from pymw_testing import require

from pymw_core import installed_interfaces
from pymw_core.testing import InterfaceContract, Target

IN_PROCESS = "its workers are threads of the master's own process"


class TestThreadsExampleContract(InterfaceContract):
    @pytest.fixture
    def pymw_target(self):
        require("threads-example" in installed_interfaces(),
                "the example interface is not installed (tests/plugins/pymw_threads_example)")
        return Target(
            "threads-example", {"num_threads": 2},
            concurrency=2,  # one task per thread, at the same time
            skip={
                "data_files": f"{IN_PROCESS}, so a task's cwd is the master's: data files "
                              "are not in it",
                "data_files_read_at_submit": f"{IN_PROCESS}, so a task's cwd is the "
                                             "master's: data files are not in it",
                "lost_worker": f"{IN_PROCESS}: killing one would kill the master",
                "cleanup": f"{IN_PROCESS}: cleanup() cannot stop a running task, which runs "
                           "on, abandoned",
            },
        )
