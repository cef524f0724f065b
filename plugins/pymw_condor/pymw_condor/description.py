"""The submit description: one per run, shared by every cluster the run submits.

What differs between tasks travels as itemdata (``pymw_task``, and ``pymw_data``: the
task's data files, each after a comma, usually empty), so a
batch of any size is one ``Schedd.submit`` call and one cluster. Each job runs::

    PYTHON pymw-runtime-<hash>.zip --file pymw-task-N.in pymw-task-N.out

in its scratch directory, with the runtime zip, its request and its data files brought
in by HTCondor's file transfer, and only the reply file brought back (as ``.reply``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from pymw_core.errors import InterfaceError

RUN_ATTRIBUTE = "PyMWRun"  # names the run in every job ad: one constraint removes a run
TASK_ATTRIBUTE = "PyMWTask"
FILE_PREFIX = "pymw-task-"

# Commands PyMW's job layout depends on; a user's value would break the run silently.
RESERVED = frozenset({
    "executable", "arguments", "transfer_executable", "initialdir", "initial_dir", "iwd",
    "log", "output", "error", "transfer_output_files", "transfer_output_remaps", "queue",
    f"+{RUN_ATTRIBUTE}".lower(), f"my.{RUN_ATTRIBUTE}".lower(),
    f"+{TASK_ATTRIBUTE}".lower(), f"my.{TASK_ATTRIBUTE}".lower(),
})
# List-valued commands a user's value is appended to rather than replacing PyMW's.
APPENDED = frozenset({"transfer_input_files"})


class TaskFiles(NamedTuple):
    """Names, relative to the run directory, of one task's files."""

    request: str  # the worker's input (``need`` and ``task`` frames)
    placeholder: str  # empty; travels in so that the job's reply file always exists
    reply: str  # the worker's ``done`` frame, brought back (remapped from the placeholder name)
    stderr: str  # the job's own stderr (the task's output is inside the reply)


def stem(attempt_id: int, secret: str) -> str:
    """The start of every file name of one attempt.

    The run's ``secret`` makes the names unguessable: when the run directory is open
    to the jobs' user (a root master), others may create files in it but cannot list
    it, so they can neither read a task's files nor plant a reply the master would load.
    """
    return f"{FILE_PREFIX}{attempt_id}-{secret}"


def task_files(attempt_id: int, secret: str) -> TaskFiles:
    """The run-directory names of one attempt's files."""
    base = stem(attempt_id, secret)
    return TaskFiles(f"{base}.in", f"{base}.out", f"{base}.reply", f"{base}.stderr")


def check_python(python: Any) -> tuple[str, str]:
    """``(executable, arguments prefix)`` running ``python`` on an execute node.

    An absolute path runs as is (``transfer_executable = False``); a bare name such as
    ``python3`` is looked up on the node's PATH through ``/usr/bin/env``, because
    HTCondor would resolve a relative executable inside the job's scratch directory.
    """
    if not isinstance(python, str) or not python.strip():
        raise InterfaceError(f"python must be the interpreter's path or name, not {python!r}")
    if any(c in python for c in " \t\n\"'"):
        raise InterfaceError(f"python {python!r} must not contain spaces or quotes")
    if os.path.isabs(python):
        return python, ""
    if "/" in python:
        raise InterfaceError(
            f"python {python!r} is a relative path; give an absolute path (as seen on the "
            "execute nodes) or a bare name to look up on their PATH"
        )
    return "/usr/bin/env", python + " "


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "True" if value else "False"
    elif isinstance(value, (str, int, float)):
        text = str(value)
    elif key.lower() in APPENDED and isinstance(value, (list, tuple)):
        text = ", ".join(os.fspath(v) for v in value)
    else:
        raise InterfaceError(
            f"submit[{key!r}] must be a string, number or bool, not {type(value).__name__}"
        )
    if "\n" in text:
        raise InterfaceError(f"submit[{key!r}] must be one line, not {text!r}")
    return text


def check_submit(submit: Any) -> dict[str, str]:
    """The user's extra submit commands as ``{key: text}``, refusing what would break PyMW."""
    if submit is None:
        return {}
    if not isinstance(submit, Mapping):
        raise InterfaceError(
            f"submit must be a dict of submit-description commands, not {type(submit).__name__}"
        )
    checked: dict[str, str] = {}
    for key, value in submit.items():
        if not isinstance(key, str) or not key.strip() or any(c.isspace() for c in key):
            raise InterfaceError(f"submit holds a bad command name {key!r}")
        if key.lower() in RESERVED:
            raise InterfaceError(
                f"submit[{key!r}] cannot be set: PyMW's condor interface sets it for every job "
                f"(reserved: {', '.join(sorted(RESERVED))})"
            )
        checked[key] = _value(key, value)
    return checked


def build(
    python: str, run_dir: str, runtime_name: str, log_path: str, run_id: str,
    extra: dict[str, str],
) -> dict[str, str]:
    """The run's submit description: PyMW's defaults, then ``extra`` (last wins, lists append)."""
    executable, prefix = check_python(python)
    stem = "$(pymw_stem)"
    description = {
        "universe": "vanilla",
        "executable": executable,
        "transfer_executable": "False",
        "arguments": f'"{prefix}{runtime_name} --file {stem}.in {stem}.out"',
        "initialdir": run_dir,
        "log": log_path,
        "output": "/dev/null",  # the task's own output travels in the reply
        "error": f"{stem}.stderr",
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        # The reply file also travels *in* (an empty placeholder), so it always exists to
        # come back: a job whose Python died ends without a result instead of on hold.
        # It comes back under another name: the shadow, running as the job owner, must
        # create the file it writes (it cannot chmod a placeholder the master owns).
        "transfer_input_files": f"{runtime_name}, {stem}.in, {stem}.out$(pymw_data)",
        "transfer_output_files": f"{stem}.out",
        "transfer_output_remaps": f'"{stem}.out = {stem}.reply"',
        "notification": "Never",
        f"+{RUN_ATTRIBUTE}": f'"{run_id}"',
        f"+{TASK_ATTRIBUTE}": "$(pymw_task)",
        "JobBatchName": f'"pymw-{run_id}"',
    }
    lowered = {k.lower(): k for k in description}
    for key, value in extra.items():
        own = lowered.get(key.lower())
        if own is not None and key.lower() in APPENDED:
            description[own] = f"{description[own]}, {value}" if value.strip() else description[own]
        elif own is not None:
            description[own] = value
        else:
            description[key] = value
            lowered[key.lower()] = key
    return description


# Per-task resources (pymw_core.batch's normalised keys) as submit commands.
RESOURCE_COMMANDS = {"cpus": "request_cpus", "memory": "request_memory", "gpus": "request_gpus"}


def with_resources(base: dict[str, str], resources: Mapping[str, int]) -> dict[str, str]:
    """``base`` with a task's resources as ``request_cpus``/``request_memory`` (MiB)/
    ``request_gpus``; they replace the same commands given in ``submit``."""
    out = dict(base)
    for key, command in RESOURCE_COMMANDS.items():
        if key in resources:
            for name in [k for k in out if k.lower() == command]:
                del out[name]
            out[command] = str(resources[key])
    return out
