"""What every batch interface shares: the run directory, task and reply files, resources.

A batch interface (``condor``, ``slurm``) runs tasks in jobs that see no pipe to the
master: each task becomes a request file that the worker runtime runs once
(``python pymw-runtime-<hash>.zip --file IN OUT``), and its reply file is read back.
This module holds that part, so that an interface only describes its jobs, submits
them and asks for their state. Standard library and core imports only.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pymw_core import bundle, wire
from pymw_core.errors import InterfaceError, TaskError
from pymw_core.payload import request_file

# -- resources --------------------------------------------------------------------------

RESOURCE_KEYS = ("cpus", "memory", "gpus")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_MIB_PER_UNIT = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024**2, "p": 1024**3}


def normalise_resources(value: Any, what: str = "resources") -> dict[str, int]:
    """``{"cpus": int >= 1, "memory": MiB >= 1, "gpus": int >= 0}``, any key absent.

    ``memory`` is a whole number of MiB or a string with a unit (``"512M"``, ``"2GB"``,
    ``"1.5GiB"``; powers of 1024, rounded up to a whole MiB). ``gpus=0`` is dropped, so
    it asks for what no ``gpus`` asks for. Anything else is a ``TaskError`` naming
    ``what`` and the bad key or value.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TaskError(f"{what} must be a dict with keys {', '.join(RESOURCE_KEYS)}, "
                        f"not {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in RESOURCE_KEYS)
    if unknown:
        raise TaskError(f"{what} has unknown key(s) {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(RESOURCE_KEYS)}")
    out: dict[str, int] = {}
    for key in RESOURCE_KEYS:
        if key not in value or value[key] is None:
            continue
        raw = value[key]
        number = _memory_mib(raw, what) if key == "memory" else _whole(raw, key, what)
        if key in ("cpus", "memory") and number < 1:
            raise TaskError(f"{what}[{key!r}] must be at least 1, not {raw!r}")
        if key == "gpus" and number < 0:
            raise TaskError(f"{what}['gpus'] must not be negative, not {raw!r}")
        if number or key != "gpus":
            out[key] = number
    return out


def _whole(raw: Any, key: str, what: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise TaskError(f"{what}[{key!r}] must be a whole number, not {raw!r}")
    return raw


def _memory_mib(raw: Any, what: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    match = _MEMORY.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise TaskError(f"{what}['memory'] must be MiB as a whole number or a string such as "
                        f"'512M' or '2GB', not {raw!r}")
    return math.ceil(float(match.group(1)) * _MIB_PER_UNIT[match.group(2).lower()])


def task_resources(task: Any) -> dict[str, int]:
    """The resources of ``task`` (an attempt), normalised; ``{}`` on a core without them."""
    return normalise_resources(getattr(task, "resources", None) or {},
                               f"the resources of {getattr(task, 'name', task)}")


def resources_key(resources: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """A hashable key: tasks with equal keys may share a job, others never."""
    return tuple((key, resources[key]) for key in RESOURCE_KEYS if key in resources)


# -- the run directory ---------------------------------------------------------------------


class RunDir:
    """One run's directory: made at start, holding the runtime zip, removed at the end.

    ``work_dir=None`` makes a private temporary directory; otherwise the run makes its
    own ``pymw-run-<id>-*`` directory inside ``work_dir`` (created if missing).
    ``absolute=True`` refuses a relative ``work_dir`` (an interface whose nodes read
    the directory must not depend on the master's current directory). ``shared=True``
    opens the directory and its files to other users (jobs that run as another user).
    """

    def __init__(self, work_dir: str | os.PathLike | None, prefix: str, *,
                 absolute: bool = False, shared: bool = False) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.shared = shared
        if work_dir is None:
            self.path = tempfile.mkdtemp(prefix=f"{prefix}-{self.run_id}-")
        else:
            if not isinstance(work_dir, (str, os.PathLike)):
                raise InterfaceError(f"work_dir must be a path, not {type(work_dir).__name__}")
            given = os.fspath(work_dir)
            if absolute and not os.path.isabs(given):
                raise InterfaceError(f"work_dir {given!r} must be an absolute path, as the "
                                     "jobs see it on the nodes")
            base = os.path.abspath(given)
            try:
                os.makedirs(base, exist_ok=True)
                self.path = tempfile.mkdtemp(prefix=f"pymw-run-{self.run_id}-", dir=base)
            except OSError as exc:
                raise InterfaceError(f"cannot use work_dir {base!r}: {exc}") from exc
        if shared:
            os.chmod(self.path, 0o777)
        self.runtime_name = ""

    def join(self, *names: str) -> str:
        """The path of ``names`` inside the run directory."""
        return os.path.join(self.path, *names)

    def install_runtime(self) -> str:
        """Write the worker runtime zip (once); its file name."""
        if not self.runtime_name:
            name, data = bundle.runtime_zip()
            self.write(name, data)
            self.runtime_name = name
        return self.runtime_name

    def mkdir(self, *names: str) -> str:
        """Make a sub-directory (open to others when the run is shared)."""
        path = self.join(*names)
        os.makedirs(path, exist_ok=True)
        if self.shared:
            os.chmod(path, 0o777)
        return path

    def write(self, name: str, data: bytes, mode: int = 0o644, atomic: bool = False) -> str:
        """Write a file of the run; readable (or ``mode``) by others when shared.

        ``atomic``: written beside under a dot-name and renamed, so that a reader that
        lists the directory never sees it half written.
        """
        path = self.join(name)
        target = path
        if atomic:
            head, tail = os.path.split(path)
            target = os.path.join(head, f".{tail}.part")
        with open(target, "wb") as fh:
            fh.write(data)
        if self.shared:
            os.chmod(target, mode)
        if atomic:
            os.replace(target, path)
        return path

    def unlink(self, *names: str) -> None:
        """Remove files of the run, quietly (a file already gone is fine)."""
        for name in names:
            try:
                os.unlink(self.join(name))
            except OSError:
                pass

    def remove(self, keep: bool = False) -> None:
        """Remove the whole run directory, unless ``keep``."""
        if not keep:
            shutil.rmtree(self.path, ignore_errors=True)


def keep_files(master: Any) -> bool:
    """Whether the master asked to keep the run's files (PyMW 0.x's ``delete_files=False``)."""
    return master is not None and not getattr(master, "delete_files", True)


# -- task and reply files -------------------------------------------------------------------


def request_bytes(task: Any, file_map: Callable[[str, str], str] | None = None) -> bytes:
    """The request file of ``task`` for ``python RUNTIME --file IN OUT``.

    ``file_map(name, master_path)`` says where the job finds each data file.
    """
    return request_file(task.payload, task.id, file_map=file_map)


def read_reply(path: str) -> tuple | None:
    """The worker runtime's ``done`` frame from a reply file; None if missing or not one."""
    try:
        with open(path, "rb") as fh:
            reply = wire.read_message(fh)
    except Exception:
        return None
    if isinstance(reply, tuple) and len(reply) == 7 and reply[0] == "done":
        return reply
    return None


def tail(path: str, limit: int = 2000) -> str:
    """The last ``limit`` bytes of a text file (a job's own stderr), or ``""``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""
