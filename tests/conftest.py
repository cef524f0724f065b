"""Shared test helpers. Service fixtures live in each plugin's own conftest.py."""

from __future__ import annotations

import os

import pytest

IN_CI = bool(os.environ.get("CI"))


def require(available: bool, what: str) -> None:
    """Skip when a real service is missing here; fail in CI, which must always have it.

    The README's "Running the tests" says how to get each service.
    """
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what}: CI must provide it (scripts/run-tests installs it as root)")
    pytest.skip(f"{what}; see README.md, 'Running the tests'")
