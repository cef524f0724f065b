"""What a task asks of its worker: cpus, memory and gpus, in one normal form.

Batch interfaces turn it into their own requests (Slurm's ``--cpus-per-task``/``--mem``/
``--gres``, HTCondor's ``request_cpus``/``request_memory``/``request_gpus``); interfaces
that run on machines they do not allocate (``local``, ``ssh``, ``mpi``) treat it as
advisory. Tasks with different resources never share a batch job (see :func:`key`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pymw_core.errors import TaskError

KEYS = ("cpus", "memory", "gpus")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_MIB_PER_UNIT = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024**2, "p": 1024**3}


def normalize(value: Any, what: str = "resources") -> dict[str, int]:
    """``{"cpus": int >= 1, "memory": MiB >= 1, "gpus": int >= 0}``, any key absent.

    ``memory`` is a whole number of MiB or a string with a unit (``"512M"``, ``"2GB"``,
    ``"1.5GiB"``; powers of 1024, rounded up to a whole MiB). ``gpus=0`` is dropped, so
    it asks for what no ``gpus`` asks for. Anything else is a ``TaskError`` naming
    ``what`` and the bad key or value.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TaskError(f"{what} must be a dict with keys {', '.join(KEYS)}, "
                        f"not {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in KEYS)
    if unknown:
        raise TaskError(f"{what} has unknown key(s) {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(KEYS)}")
    out: dict[str, int] = {}
    for name in KEYS:
        if name not in value or value[name] is None:
            continue
        raw = value[name]
        number = _memory_mib(raw, what) if name == "memory" else _whole(raw, name, what)
        if name in ("cpus", "memory") and number < 1:
            raise TaskError(f"{what}[{name!r}] must be at least 1, not {raw!r}")
        if name == "gpus" and number < 0:
            raise TaskError(f"{what}['gpus'] must not be negative, not {raw!r}")
        if number or name != "gpus":
            out[name] = number
    return out


def merged(default: Mapping[str, int], own: Mapping[str, Any] | None) -> dict[str, int]:
    """A task's resources: the master's default, overridden key by key by the task's own."""
    result = dict(default)
    result.update(normalize(own, "the task's resources"))
    return result


def key(resources: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """A hashable key: tasks with equal keys may share a batch job, others never."""
    return tuple((name, resources[name]) for name in KEYS if name in resources)


def _whole(raw: Any, name: str, what: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise TaskError(f"{what}[{name!r}] must be a whole number, not {raw!r}")
    return raw


def _memory_mib(raw: Any, what: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    match = _MEMORY.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise TaskError(f"{what}['memory'] must be MiB as a whole number or a string such as "
                        f"'512M' or '2GB', not {raw!r}")
    return math.ceil(float(match.group(1)) * _MIB_PER_UNIT[match.group(2).lower()])
