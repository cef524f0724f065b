"""One check's world: masters on the interface under test, its files, waits with deadlines.

The interface is wrapped (:func:`pymw_core.testing.calls.watched`) so the kit sees what
the master never shows: every hook call and every report the interface makes. Every
wait and every call into the master that reaches a hook has a deadline from the
:class:`Target`; a failure says what did not happen and what the interface was doing.
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
from pymw_core.plugins import installed_interfaces
from pymw_core.testing.calls import HookLog, watched
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


class Ends:
    """Observer: how many times the master ended each task (done or failed), and when the
    first task of the check ended (the interface's measured start-up)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count: dict[int, int] = {}
        self.retried: dict[int, int] = {}
        self.first_end: float | None = None

    def on_task_done(self, task: Any) -> None:
        with self.lock:
            self.count[id(task)] = self.count.get(id(task), 0) + 1
            if self.first_end is None:
                self.first_end = time.monotonic()

    def on_task_failed(self, task: Any, error: BaseException) -> None:
        self.on_task_done(task)

    def on_task_retried(self, task: Any, reason: str) -> None:
        with self.lock:
            self.retried[id(task)] = self.retried.get(id(task), 0) + 1


class Run:
    """Everything one check makes; :meth:`close` takes it all down again."""

    def __init__(self, target: Target, tmp_path: Path) -> None:
        self.target = target
        self.tasks = load_tasks()
        self.log = HookLog()
        self.ends = Ends()
        self.masters: list[Master] = []
        #: Master makings the check gave up waiting for: close() still waits for them and
        #: closes what they make, or a slow start's workers would run on into later checks.
        self.late_starts: list[threading.Thread] = []
        self.created: float | None = None
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
        if self.created is None:
            self.created = time.monotonic()

        def make() -> Master:
            interface = watched(self.build_interface(), self.log, failing)
            master = Master(interface, observers=[self.ends], **settings)
            self.masters.append(master)
            return master

        return self.call(make, "the interface to start and the master to adopt it",
                         late=self.late_starts)

    # -- waiting -------------------------------------------------------------------

    def fail(self, what: str, seconds: float, tasks: int) -> None:
        """Fail saying ``what`` did not happen in ``seconds``, and where that budget came from."""
        measured = ""
        if self.created is not None and self.ends.first_end is not None:
            measured = (f"; this check's first task ended {self.ends.first_end - self.created:.1f}"
                        " s after its master was made")
        elif self.created is not None:
            measured = "; no task of this check has ended yet"
        pytest.fail(f"{self.target.label}: {what} did not happen within {seconds:g} s "
                    f"({self.target.budget(tasks)}{measured})")

    def wait(self, condition: Callable[[], Any], what: str, tasks: int = 1) -> Any:
        """Poll until ``condition()`` is true; fail saying ``what`` did not happen in time.

        The deadline is ``Target.seconds(tasks)``: start-up plus ``tasks`` tasks' worth.
        """
        seconds = self.target.seconds(tasks)
        deadline = time.monotonic() + seconds
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                self.fail(what, seconds, tasks)
            time.sleep(0.02)

    def call(self, function: Callable[[], Any], what: str, tasks: int = 1, *,
             late: list[threading.Thread] | None = None) -> Any:
        """``function()`` (a call into the master that reaches a hook), with a deadline: a
        hook that hangs fails the check instead of hanging it (its thread goes on ``late``)."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = function()
            except BaseException as exc:  # re-raised on the check's thread
                box["error"] = exc

        thread = threading.Thread(target=run, name="pymw-contract-call", daemon=True)
        thread.start()
        seconds = self.target.seconds(tasks)
        thread.join(seconds)
        if thread.is_alive():
            if late is not None:
                late.append(thread)
            self.fail(f"{what} (the call returning)", seconds, tasks)
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def outcome(self, master: Master, task: Any, tasks: int = 1) -> Any:
        """``get_result(task)``'s value, waiting at most the deadline for the task to end."""
        self.wait(task.done, f"{task.name} to end", tasks)
        try:
            return master.get_result(task)[1]
        except Exception as exc:
            pytest.fail(f"{self.target.label}: {task.name} failed with "
                        f"{type(exc).__name__}: {exc}", pytrace=False)

    def error(self, master: Master, task: Any, tasks: int = 1) -> BaseException:
        """The exception ``get_result(task)`` raises (failing if it returns instead)."""
        self.wait(task.done, f"{task.name} to end", tasks)
        try:
            value = master.get_result(task)[1]
        except Exception as exc:
            return exc
        pytest.fail(f"{self.target.label}: {task.name} returned {value!r:.200} instead of "
                    "raising")

    def marker(self, name: str) -> str:
        return os.path.join(self.shared, name)

    def pid_of(self, label: str, tasks: int = 1) -> int:
        """The pid a ``hold`` task wrote, waiting for the task to start."""
        path = self.marker(f"{label}.pid")
        self.wait(lambda: os.path.exists(path),
                  f"task {label!r} to start (its marker {path} to appear)", tasks)
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
            for attempt_id, said in self.log.of_task(task).items():
                assert len(said) <= 1, (
                    f"{self.target.label} reported attempt {attempt_id} of {task.name} "
                    f"{len(said)} times: {said}")

    def explain(self, key: str, text: str) -> str:
        """A failure of check ``key``: the rule, what went wrong, what the interface did."""
        from pymw_core.testing.rules import RULES

        rule = RULES[key.split("[", 1)[0]]
        return (f"{self.target.label} breaks the contract rule `{key}`: {rule.text}\n"
                f"{text.strip()}\n{self.log.describe()}")

    # -- the end ----------------------------------------------------------------------

    def close(self) -> None:
        try:
            hung = []
            for thread in self.late_starts:  # a master made late is closed all the same
                thread.join(self.target.seconds(1))
                if thread.is_alive():
                    hung.append(pytest.fail.Exception(
                        f"{self.target.label}: the interface was still starting "
                        f"{self.target.seconds(1):g} s after its check gave up on it; what "
                        "it starts may outlive the check"))
            for master in list(self.masters):  # every one, even after one that hangs
                try:
                    self.call(master.close, "close() of the master (the interface's cleanup)")
                except pytest.fail.Exception as exc:
                    hung.append(exc)
            if hung:
                raise hung[0]
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
