"""The interface contract as a test kit: run PyMW's contract against any interface.

    from pymw_core.testing import InterfaceContract, Target

    class TestMineContract(InterfaceContract):
        target = Target("mine", {"workers": 2}, concurrency=2)

Each check of docs/writing-an-interface.md (one rule of :data:`RULES`) becomes a test
of that class. Installed with pymw-core; this package is also a pytest plugin (the
``pytest11`` entry point ``pymw_core.testing``, or ``-p pymw_core.testing``) that
registers the kit's markers.
``import pymw_core`` never imports it (nor pytest).
"""

from __future__ import annotations

from typing import Any

from pymw_core.testing.calls import HookFailure
from pymw_core.testing.contract import InterfaceContract
from pymw_core.testing.harness import Run
from pymw_core.testing.rules import RULES, STOPS, Rule
from pymw_core.testing.target import CHECKS, FAILABLE_HOOKS, Target

__all__ = ["CHECKS", "FAILABLE_HOOKS", "RULES", "STOPS", "HookFailure", "InterfaceContract",
           "Rule", "Run", "Target"]


def pytest_configure(config: Any) -> None:
    """Register the kit's markers (so ``--strict-markers`` accepts them)."""
    config.addinivalue_line(
        "markers", "pymw_contract_slow: a check of PyMW's contract kit that stops, kills "
        "or waits on workers (deselect with -m 'not pymw_contract_slow')")
