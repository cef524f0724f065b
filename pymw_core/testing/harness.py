"""One check's world: masters on the interface under test, its files, waits with deadlines.

The interface is wrapped (:class:`Watched`) so the kit sees what the master never
shows: every report the interface makes on each attempt. The wrapper offers the
master exactly the hooks the interface has, so a missing hook stays missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pymw_core import Master
from pymw_core.hookspecs import INTERFACE_HOOKS
from pymw_core.plugins import installed_interfaces
from pymw_core.task import Attempt
from pymw_core.testing.target import Target

_tasks: ModuleType | None = None


def load_tasks() -> ModuleType:
    """The kit's tasks as a module outside ``sys.modules``: cloudpickle ships them by value."""
    global _tasks
    if _tasks is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks.py")
        spec = importlib.util.spec_from_file_location("pymw_contract_tasks", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _tasks = module
    return _tasks


class Reports:
    """Each attempt's reports (``task_finished`` / ``worker_lost``), as the interface made them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_attempt: dict[int, list[str]] = {}
        self.attempts: dict[int, Attempt] = {}

    def add(self, attempt: Attempt, what: str) -> None:
        with self.lock:
            self.by_attempt.setdefault(attempt.id, []).append(what)

    def of_task(self, task: Any) -> dict[int, list[str]]:
        with self.lock:
            return {aid: list(self.by_attempt.get(aid, ()))
                    for aid, attempt in self.attempts.items() if attempt.task is task}


class _Handle:
    """The attempt as the interface sees it: every attribute is the attempt's own, and
    its two reports are recorded on the way."""

    __slots__ = ("_attempt", "_reports")

    def __init__(self, attempt: Attempt, reports: Reports) -> None:
        object.__setattr__(self, "_attempt", attempt)
        object.__setattr__(self, "_reports", reports)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(handle, Attempt), as deliver() asks
        return Attempt

    def task_finished(self, *args: Any, **kwargs: Any) -> None:
        self._reports.add(self._attempt, "task_finished")
        self._attempt.task_finished(*args, **kwargs)

    def worker_lost(self, *args: Any, **kwargs: Any) -> None:
        self._reports.add(self._attempt, "worker_lost")
        self._attempt.worker_lost(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._attempt, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._attempt, name, value)

    def __repr__(self) -> str:
        return repr(self._attempt)


class HookFailure(RuntimeError):
    """Raised on purpose by a hook the ``failing_hooks`` check makes fail."""


def watched(interface: Any, reports: Reports, failing: str | None = None) -> Any:
    """``interface`` behind a wrapper with the same hooks; ``failing`` raises after each call
    (``get_available_workers`` raises instead of answering, once)."""
    present = [h for h in INTERFACE_HOOKS if callable(getattr(interface, h, None))]
    handles: dict[int, _Handle] = {}
    state = {"failed_once": False}

    def handle(attempt: Attempt) -> _Handle:
        with reports.lock:
            found = handles.get(attempt.id)
            if found is None:
                found = handles[attempt.id] = _Handle(attempt, reports)
                reports.attempts[attempt.id] = attempt
            return found

    def forward(hook: str) -> Callable[..., Any]:
        real = getattr(interface, hook)

        def call(self: Any, **kwargs: Any) -> Any:
            if "task" in kwargs:
                kwargs["task"] = handle(kwargs["task"])
            if hook == failing == "get_available_workers" and not state["failed_once"]:
                state["failed_once"] = True
                raise HookFailure("get_available_workers failed on purpose (contract kit)")
            answer = real(**kwargs)
            if hook == failing and hook != "get_available_workers":
                raise HookFailure(f"{hook} failed on purpose (contract kit)")
            return answer

        # pluggy passes hook arguments by name: the wrapper must take the same names.
        names = {"execute_task": "task, worker", "stop_task": "task, worker",
                 "reserve_worker": "worker", "worker_finished": "worker",
                 "attach_master": "master"}.get(hook, "")
        args = ", ".join(f"{n}={n}" for n in names.split(", ") if n)
        scope = {"call": call}
        exec(f"def {hook}(self{', ' if names else ''}{names}):\n"
             f"    return call(self{', ' if args else ''}{args})\n", scope)
        return scope[hook]

    def getattr_(self: Any, name: str) -> Any:
        return getattr(interface, name)

    namespace: dict[str, Any] = {h: forward(h) for h in present}
    namespace["__getattr__"] = getattr_
    namespace["__repr__"] = lambda self: f"<watched {interface!r}>"
    cls = type(f"Watched{type(interface).__name__}", (), namespace)
    return cls()


class Ends:
    """Observer: how many times the master ended each task (done or failed)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count: dict[int, int] = {}
        self.retried: dict[int, int] = {}

    def on_task_done(self, task: Any) -> None:
        with self.lock:
            self.count[id(task)] = self.count.get(id(task), 0) + 1

    def on_task_failed(self, task: Any, error: BaseException) -> None:
        self.on_task_done(task)

    def on_task_retried(self, task: Any, reason: str) -> None:
        with self.lock:
            self.retried[id(task)] = self.retried.get(id(task), 0) + 1


def pid_gone(pid: int) -> bool:
    """True once ``pid`` is no live process of this host (a zombie has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


class Run:
    """Everything one check makes; :meth:`close` takes it all down again."""

    def __init__(self, target: Target, tmp_path: Path) -> None:
        self.target = target
        self.tasks = load_tasks()
        self.reports = Reports()
        self.ends = Ends()
        self.masters: list[Master] = []
        base = target.shared_dir or str(tmp_path)
        self.shared = os.path.join(base, f"contract-markers-{uuid.uuid4().hex[:12]}")
        os.makedirs(self.shared)
        os.chmod(self.shared, 0o777)  # workers may run as another user (a batch pool's)
        # The data files, modules and scripts the master sends: beside the markers, where
        # a batch system's own daemons can read them too.
        self.files = Path(self.shared) / "files"
        self.files.mkdir()
        os.chmod(self.files, 0o755)
        self.watch = {d: set(os.listdir(d)) if os.path.isdir(d) else set()
                      for d in target.watch_dirs}
        # A private TMPDIR for the master and the workers it starts: what is left in it
        # after close() is the interface's leftover.
        self.tmpdir = tempfile.mkdtemp(prefix="contract-tmp-", dir=str(tmp_path))
        self._saved_tmpdir = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = self.tmpdir
        tempfile.tempdir = None

    # -- masters -------------------------------------------------------------------

    def build_interface(self) -> Any:
        factory = self.target.interface
        if isinstance(factory, str):
            found = installed_interfaces()
            if factory not in found:
                pytest.fail(f"no interface named {factory!r} is installed "
                            f"(installed: {', '.join(sorted(found)) or 'none'})")
            factory = found[factory].load()
        return factory(**dict(self.target.options))

    def master(self, failing: str | None = None, **settings: Any) -> Master:
        """A master on a fresh instance of the interface, watched; closed by :meth:`close`."""
        interface = watched(self.build_interface(), self.reports, failing)
        master = Master(interface, observers=[self.ends], **settings)
        self.masters.append(master)
        return master

    # -- waiting -------------------------------------------------------------------

    def wait(self, condition: Callable[[], Any], what: str, seconds: float | None = None) -> Any:
        """Poll until ``condition()`` is true; fail saying ``what`` did not happen in time."""
        seconds = self.target.deadline if seconds is None else seconds
        deadline = time.monotonic() + seconds
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                pytest.fail(f"{self.target.label}: {what} did not happen within {seconds} s")
            time.sleep(0.05)

    def outcome(self, master: Master, task: Any) -> Any:
        """``get_result(task)``'s value, waiting at most the deadline for the task to end."""
        self.wait(task.done, f"{task.name} to end")
        return master.get_result(task)[1]

    def error(self, master: Master, task: Any) -> BaseException:
        """The exception ``get_result(task)`` raises (failing if it returns instead)."""
        self.wait(task.done, f"{task.name} to end")
        try:
            value = master.get_result(task)[1]
        except Exception as exc:
            return exc
        pytest.fail(f"{self.target.label}: {task.name} returned {value!r} instead of raising")

    def marker(self, name: str) -> str:
        return os.path.join(self.shared, name)

    def pid_of(self, label: str) -> int:
        """The pid a ``hold`` task wrote, waiting for the task to start."""
        path = self.marker(f"{label}.pid")
        self.wait(lambda: os.path.exists(path),
                  f"task {label!r} to start (its marker {path} to appear)")
        with open(path, encoding="utf-8") as fh:
            return int(fh.read())

    def ended_once(self, tasks: list[Any]) -> None:
        """Each task ended exactly once for the master, and on each attempt the interface
        reported at most once (``task_finished`` or ``worker_lost``)."""
        for task in tasks:
            self.wait(lambda t=task: self.ends.count.get(id(t)), f"the end of {task.name}")
        for task in tasks:
            ends = self.ends.count.get(id(task))
            assert ends == 1, f"{task.name} ended {ends} times"
            for attempt_id, said in self.reports.of_task(task).items():
                assert len(said) <= 1, (
                    f"{self.target.label} reported attempt {attempt_id} of {task.name} "
                    f"{len(said)} times: {said}")

    # -- the end ----------------------------------------------------------------------

    def close(self) -> None:
        try:
            for master in self.masters:
                master.close()
        finally:
            if self._saved_tmpdir is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = self._saved_tmpdir
            tempfile.tempdir = None
            shutil.rmtree(self.shared, ignore_errors=True)
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What the interface left in the private TMPDIR and in the watched directories."""
        left = [os.path.join(self.tmpdir, n) for n in os.listdir(self.tmpdir)]
        for folder, before in self.watch.items():
            now = set(os.listdir(folder)) if os.path.isdir(folder) else set()
            left += [os.path.join(folder, n) for n in sorted(now - before)
                     if not n.startswith("contract-markers-")]
        return left
