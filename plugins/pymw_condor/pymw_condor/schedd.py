"""Reaching the pool's schedd: in bounded time, with an error that says where it looked."""

from __future__ import annotations

import os
import threading
from typing import Any

import htcondor2

from pymw_core.errors import InterfaceError


def where() -> str:
    """The configuration PyMW reads the pool from, for error messages."""
    config = os.environ.get("CONDOR_CONFIG", "the default HTCondor configuration")
    try:
        collector = htcondor2.param.get("COLLECTOR_HOST", "(not set)")
    except Exception:  # pragma: no cover - param is a plain mapping
        collector = "(unknown)"
    return f"CONDOR_CONFIG={config}, COLLECTOR_HOST={collector}"


def _probe() -> tuple[htcondor2.Schedd, str]:
    location = htcondor2.Collector().locate(htcondor2.DaemonType.Schedd)
    schedd = htcondor2.Schedd(location)
    # The collector may still list a schedd that is gone: ask the schedd itself.
    schedd.query(constraint="false", projection=["ClusterId"], limit=1)
    return schedd, str(location.get("Name", "schedd"))


def connect(timeout: float) -> tuple[htcondor2.Schedd, str]:
    """The schedd the configuration names and its name; InterfaceError within ``timeout`` s.

    The bindings' calls cannot be interrupted, so the probe runs on a daemon thread that
    is abandoned if it does not answer in time.
    """
    box: dict[str, Any] = {}

    def probe() -> None:
        try:
            box["found"] = _probe()
        except BaseException as exc:  # reported to the caller below
            box["error"] = exc

    thread = threading.Thread(target=probe, name="pymw-condor-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if "found" in box:
        return box["found"]
    if thread.is_alive():
        raise InterfaceError(
            f"the HTCondor schedd did not answer within {timeout:g} s ({where()}); "
            "is the pool up, and does `condor_q` work here?"
        )
    error = box.get("error")
    raise InterfaceError(
        f"cannot reach the HTCondor schedd ({where()}): {type(error).__name__}: {error}; "
        "is the pool up, and does `condor_q` work here?"
    ) from error


def remove(schedd: htcondor2.Schedd, spec: str, reason: str) -> Any:
    """Remove the jobs ``spec`` names (``"c.p"`` or a constraint), with ``reason`` logged.

    The reason goes as a ``(text, code)`` tuple: the bindings drop a plain string.
    """
    return schedd.act(htcondor2.JobAction.Remove, spec, (reason, 0))
