"""What every batch interface shares: the run directory, task and reply files, resources.

A batch interface (``condor``, ``slurm``) runs tasks in jobs that see no pipe to the
master: each task becomes a request file that the worker runtime runs once
(``python pymw-runtime-<hash>.zip --file IN OUT``), and its reply file is read back.
This module holds that part, so that an interface only describes its jobs, submits
them and asks for their state. Standard library and core imports only.
"""

from __future__ import annotations

import collections
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

from pymw_core import bundle, wire
from pymw_core.errors import InterfaceError
from pymw_core.payload import request_file

# -- resources --------------------------------------------------------------------------


class RecentJobs:
    """The batch job that ran each recent task, for ``job_id()`` (bounded: tasks come and go).

    Keyed by the Task (an attempt, or the Task itself, may be given), so a retry's job
    replaces the earlier one.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._jobs: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._size = size

    def record(self, task: Any, job: str) -> None:
        task_id = _task_id(task)
        self._jobs[task_id] = job
        self._jobs.move_to_end(task_id)
        if len(self._jobs) > self._size:
            self._jobs.popitem(last=False)

    def get(self, task: Any) -> str | None:
        return self._jobs.get(_task_id(task))


def _task_id(task: Any) -> int:
    return getattr(task, "task", task).id  # an attempt names its task; a Task is one


def task_resources(task: Any) -> dict[str, int]:
    """The resources of ``task`` (an attempt), as the core normalised them."""
    return dict(getattr(task, "resources", None) or {})


# -- the run directory ---------------------------------------------------------------------


_SHARED_DIR = 0o1733  # others: create and enter, never list; sticky: nor remove others' files


class RunDir:
    """One run's directory: made at start, holding the runtime zip, removed at the end.

    ``work_dir=None`` makes a private temporary directory; otherwise the run makes its
    own ``pymw-run-<id>-*`` directory inside ``work_dir`` (created if missing).
    ``absolute=True`` refuses a relative ``work_dir`` (an interface whose nodes read
    the directory must not depend on the master's current directory). ``shared=True``
    lets other users (jobs that run as another user) create files in the directory and
    read the ones they are told the names of, but not list it nor remove others' files
    (mode 1733): interfaces put :attr:`secret` in every name a job needs.
    """

    def __init__(self, work_dir: str | os.PathLike | None, prefix: str, *,
                 absolute: bool = False, shared: bool = False) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.secret = secrets.token_hex(8)
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
            os.chmod(self.path, _SHARED_DIR)
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
            os.chmod(path, _SHARED_DIR)
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
