"""What a task asks of its worker: cpus, memory and gpus, in one normal form.

Batch interfaces turn it into their own requests (Slurm's ``--cpus-per-task``/``--mem``/
``--gres``, HTCondor's ``request_cpus``/``request_memory``/``request_gpus``); interfaces
that run on machines they do not allocate (``local``, ``ssh``) treat it as advisory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pymw_core.errors import TaskError

KEYS = ("cpus", "memory", "gpus")
_UNITS = {"": 1, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def normalize(resources: Mapping[str, Any] | None) -> dict[str, int]:
    """``{"cpus": int, "memory": MiB as int, "gpus": int}`` with only the keys given.

    Memory is a number of MiB or a string with a unit (``"512MB"``, ``"2G"``,
    ``"1.5GiB"``; powers of 1024). Raises TaskError naming the bad key or value.
    """
    if resources is None:
        return {}
    if not isinstance(resources, Mapping):
        raise TaskError(f"resources must be a mapping such as {{'cpus': 2}}, not {resources!r}")
    out: dict[str, int] = {}
    for key, value in resources.items():
        if key not in KEYS:
            raise TaskError(f"unknown resource {key!r} (known: {', '.join(KEYS)})")
        if value is None:
            continue
        if key == "memory":
            out[key] = _memory_mib(value)
        else:
            least = 1 if key == "cpus" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise TaskError(f"resource {key!r} must be a whole number of at least {least}, "
                                f"not {value!r}")
            out[key] = value
    return out


def merged(default: Mapping[str, int], own: Mapping[str, Any] | None) -> dict[str, int]:
    """A task's resources: the master's default, overridden key by key by the task's own."""
    result = dict(default)
    result.update(normalize(own))
    return result


def _memory_mib(value: Any) -> int:
    if isinstance(value, bool):
        raise TaskError(f"resource 'memory' must be MiB or a size such as '2GB', not {value!r}")
    if isinstance(value, (int, float)):
        mib = float(value)
    else:
        match = _MEMORY.match(str(value))
        if not match:
            raise TaskError(f"resource 'memory' must be MiB or a size such as '2GB', not {value!r}")
        mib = float(match[1]) * _UNITS[match[2].lower()]
    if mib <= 0:
        raise TaskError(f"resource 'memory' must be positive, not {value!r}")
    return max(1, round(mib))
