"""Checking the ``slurm`` interface's options and turning them into ``sbatch`` options."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

from pymw_core.errors import InterfaceError
from pymw_slurm.element import parse_duration

# sbatch options PyMW sets for every job (or has an option of its own for).
RESERVED = frozenset({
    "array", "a", "job-name", "J", "output", "o", "error", "e", "chdir", "D", "parsable",
    "wrap", "test-only", "input", "i", "partition", "p", "account", "A", "time", "t",
    "cpus-per-task", "c", "mem", "gres", "gpus", "G",
})
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


def positive(name: str, value: Any, whole: bool = False) -> Any:
    """``value`` if it is a positive (whole) number; InterfaceError otherwise."""
    kinds = (int,) if whole else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or value <= 0:
        raise InterfaceError(f"{name} must be a positive {'whole ' if whole else ''}number, "
                             f"not {value!r}")
    return value


def check_python(python: Any) -> str:
    """The interpreter on the nodes: an absolute path there, or a bare name on their PATH."""
    if not isinstance(python, str) or not python.strip():
        raise InterfaceError(f"python must be the interpreter's path or name, not {python!r}")
    if any(c in python for c in " \t\n\"'\\$`"):
        raise InterfaceError(f"python {python!r} must not contain spaces, quotes or $")
    if "/" in python and not os.path.isabs(python):
        raise InterfaceError(f"python {python!r} is a relative path; give an absolute path "
                             "(as seen on the nodes) or a bare name to look up on their PATH")
    return python


def check_time(value: Any) -> tuple[str | None, float | None]:
    """``(sbatch --time text, seconds)``; ``(None, None)`` for the partition's default.

    A whole number is minutes (as for ``sbatch --time``); a string is any of Slurm's
    forms (``"30"``, ``"10:00"``, ``"1:30:00"``, ``"2-00:00:00"``).
    """
    if value is None:
        return None, None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise InterfaceError(f"time must be a positive number of minutes, not {value!r}")
        return str(value), value * 60.0
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = -1.0
        if seconds is None:
            return value.strip(), None
        if seconds > 0:
            return value.strip(), seconds
    raise InterfaceError(f"time must be minutes (a whole number) or a Slurm time such as "
                         f"'30:00' or '1-12:00:00', not {value!r}")


def check_name(option: str, value: Any) -> str | None:
    """A partition or account name, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise InterfaceError(f"{option} must be a name without spaces, not {value!r}")
    return value


def check_sbatch(value: Any) -> list[str]:
    """The pass-through ``sbatch`` options as command-line arguments.

    A dict ``{"qos": "high", "exclusive": True, "constraint": "avx2"}`` becomes
    ``--qos=high --exclusive --constraint=avx2`` (False or None: left out); a list of
    ``"--name=value"`` strings is taken as it is. Options PyMW sets are refused.
    """
    if value is None:
        return []
    args: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not _NAME.match(key.lstrip("-")):
                raise InterfaceError(f"sbatch holds a bad option name {key!r}")
            name = key.lstrip("-")
            _not_reserved(name)
            if item is None or item is False:
                continue
            if item is True:
                args.append(f"--{name}")
                continue
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise InterfaceError(f"sbatch[{key!r}] must be a string, number or bool, "
                                     f"not {type(item).__name__}")
            text = str(item)
            if "\n" in text:
                raise InterfaceError(f"sbatch[{key!r}] must be one line, not {text!r}")
            args.append(f"--{name}={text}")
        return args
    if isinstance(value, (list, tuple)):
        for item in value:
            if not isinstance(item, str) or not item.startswith("-") or "\n" in item:
                raise InterfaceError(f"sbatch options in a list are '--name=value' strings, "
                                     f"not {item!r}")
            name = item.lstrip("-").split("=", 1)[0]
            if not _NAME.match(name):
                raise InterfaceError(f"sbatch holds a bad option {item!r}")
            _not_reserved(name)
            args.append(item)
        return args
    raise InterfaceError(f"sbatch must be a dict of sbatch options (or a list of "
                         f"'--name=value' strings), not {type(value).__name__}")


def _not_reserved(name: str) -> None:
    if name in RESERVED:
        raise InterfaceError(
            f"sbatch option {name!r} cannot be passed through: PyMW sets it, or has an option "
            "or a per-task resource for it (partition, account, time; resources cpus, memory, "
            "gpus)")


def resource_options(resources: Mapping[str, int]) -> list[str]:
    """sbatch options for normalised resources: cpus, memory (MiB) and gpus."""
    args = []
    if "cpus" in resources:
        args.append(f"--cpus-per-task={resources['cpus']}")
    if "memory" in resources:
        args.append(f"--mem={resources['memory']}M")
    if resources.get("gpus"):
        args.append(f"--gres=gpu:{resources['gpus']}")
    return args


def need_seconds(timeout: float | None, margin: float) -> int:
    """The walltime a task needs left in an element before it may start there."""
    return max(1, math.ceil(timeout if timeout else margin))
