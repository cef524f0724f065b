"""The interface contract kit (pymw_core.testing) against ``local``."""

from __future__ import annotations

from pymw_core.testing import InterfaceContract, Target


class TestLocalContract(InterfaceContract):
    target = Target("local", {"num_workers": 2}, concurrency=2)
