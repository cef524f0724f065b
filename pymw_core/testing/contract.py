"""The interface contract as pytest checks: subclass :class:`InterfaceContract`.

Each ``test_*`` method is one check of docs/writing-an-interface.md, run on a fresh
master. Checks that need a hook the interface lacks skip, saying which hook; checks
the interface's own tests declare it cannot pass (``Target.skip``) skip with that
reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pymw_core import (
    MasterClosedError,
    RemoteTraceback,
    TaskCancelledError,
    TaskTimeoutError,
    WorkerLostError,
)
from pymw_core.master import MASTER_STATUS_KEYS
from pymw_core.testing.harness import Run, pid_gone
from pymw_core.testing.target import FAILABLE_HOOKS, Target

slow = pytest.mark.pymw_contract_slow


class InterfaceContract:
    """Base class of an interface's contract tests.

    Give the interface either as a class attribute ``target = Target(...)`` or, when it
    needs other fixtures (a server, a cluster), by overriding the ``pymw_target``
    fixture in the subclass. Name the subclass ``Test...`` so pytest collects it.
    """

    target: Target | None = None

    @pytest.fixture
    def pymw_target(self) -> Target:
        """The interface under test (override this fixture, or set ``target``)."""
        if self.target is None:
            pytest.fail(f"{type(self).__name__} names no interface: set target = Target(...) "
                        "or override the pymw_target fixture")
        return self.target

    @pytest.fixture
    def contract(self, pymw_target: Target, tmp_path: Path,
                 request: pytest.FixtureRequest) -> Iterator[Run]:
        """One check's :class:`Run`, after the declared skips."""
        name = request.node.originalname.removeprefix("test_")
        call = getattr(request.node, "callspec", None)
        keys = [name]
        if call is not None and "hook" in call.params:
            keys.insert(0, f"{name}[{call.params['hook']}]")
        for key in keys:
            if key in pymw_target.skip:
                pytest.skip(f"{pymw_target.label} cannot pass {key}: {pymw_target.skip[key]}")
        run = Run(pymw_target, tmp_path)
        try:
            yield run
        finally:
            run.close()

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _needs(contract: Run, master: Any, hook: str, check: str) -> None:
        """Skip unless the interface implements ``hook`` (the master's wrapper has exactly
        the interface's hooks)."""
        if not callable(getattr(master.interface, hook, None)):
            pytest.skip(f"{contract.target.label} has no {hook}() hook, which {check} needs")

    # -- results, errors, output ------------------------------------------------------

    def test_results(self, contract: Run) -> None:
        """Every task ends exactly once with its own result, arguments intact."""
        tasks = contract.tasks
        master = contract.master()
        squares = [master.submit_task(tasks.square, (n,)) for n in range(contract.target.tasks)]
        echo = master.submit_task(tasks.echo, (b"\x00bytes", {"k": [1.5, None]}, "é"))
        for n, task in enumerate(squares):
            assert contract.outcome(master, task) == n * n
        assert contract.outcome(master, echo) == ((b"\x00bytes", {"k": [1.5, None]}, "é"), {})
        contract.ended_once([*squares, echo])

    def test_exceptions(self, contract: Run) -> None:
        """A task's exception reaches get_result with its type and the worker's traceback."""
        tasks = contract.tasks
        master = contract.master()
        failing = master.submit_task(tasks.fail, ("no such thing",))
        after = master.submit_task(tasks.square, (7,))
        error = contract.error(master, failing)
        assert type(error) is tasks.ContractError, f"got {type(error)!r}: {error}"
        assert str(error) == "no such thing"
        cause = error.__cause__
        assert isinstance(cause, RemoteTraceback), f"no worker traceback, cause {cause!r}"
        assert "in fail" in cause.tb and "ContractError" in cause.tb, cause.tb
        assert contract.outcome(master, after) == 49, "a task after a failure must still run"
        contract.ended_once([failing, after])

    def test_output(self, contract: Run) -> None:
        """What a task prints reaches task.stdout and task.stderr."""
        master = contract.master()
        task = master.submit_task(contract.tasks.chatter, ("parrot",))
        assert contract.outcome(master, task) == "parrot"
        assert "out:parrot" in task.stdout, f"stdout was {task.stdout!r}"
        assert "err:parrot" in task.stderr, f"stderr was {task.stderr!r}"
        assert "err:" not in task.stdout and "out:" not in task.stderr

    def test_data_files(self, contract: Run) -> None:
        """A data file is in the task's working directory, under its own name."""
        data = contract.files / "contract-input.txt"
        data.write_text("data file contents ✓\n", encoding="utf-8")
        master = contract.master()
        task = master.submit_task(contract.tasks.read_data, ("contract-input.txt",),
                                  data_files=[str(data)])
        assert contract.outcome(master, task) == "data file contents ✓\n"

    def test_data_files_read_at_submit(self, contract: Run) -> None:
        """A data file is read when submit_task returns: rewriting it at once (same size,
        same clock tick) or deleting it changes nothing for a task already submitted."""
        data = contract.files / "contract-versions.txt"
        gone = contract.files / "contract-deleted.txt"
        master = contract.master()
        versions = []
        for text in ("v1", "v2", "v3"):
            data.write_text(text, encoding="utf-8")
            versions.append(master.submit_task(contract.tasks.read_data,
                                               ("contract-versions.txt",),
                                               data_files=[str(data)]))
        gone.write_text("deleted after submit", encoding="utf-8")
        deleted = master.submit_task(contract.tasks.read_data, ("contract-deleted.txt",),
                                     data_files=[str(gone)])
        gone.unlink()
        data.write_text("v4", encoding="utf-8")
        assert [contract.outcome(master, t) for t in versions] == ["v1", "v2", "v3"]
        assert contract.outcome(master, deleted) == "deleted after submit"

    def test_modules(self, contract: Run) -> None:
        """A module given in modules= is shipped by value: the worker has no copy of it."""
        name = f"pymw_contract_module_{os.getpid()}_{id(contract)}"
        path = contract.files / f"{name}.py"
        path.write_text(contract.tasks.MODULE.format(value=name), encoding="utf-8")
        module = _import_file(name, path)
        master = contract.master()
        task = master.submit_task(contract.tasks.shipped_value, (name,), modules=[module])
        assert contract.outcome(master, task) == name

    def test_scripts(self, contract: Run) -> None:
        """A PyMW 0.x script runs with pymw_get_input() and pymw_return_output()."""
        script = contract.files / "contract_script.py"
        script.write_text(contract.tasks.SCRIPT, encoding="utf-8")
        master = contract.master()
        task = master.submit_task(str(script), [1, 2, 3])
        assert contract.outcome(master, task) == 6
        assert "script ran" in task.stdout

    def test_scripts_in_any_encoding(self, contract: Run) -> None:
        """A script with a PEP 263 coding line (latin-1, as many 0.x scripts are) runs."""
        script = contract.files / "contract_latin1.py"
        script.write_bytes(contract.tasks.LATIN1_SCRIPT.encode("latin-1"))
        master = contract.master()
        task = master.submit_task(str(script), "caf")
        assert contract.outcome(master, task) == "café"

    def test_errors_say_where(self, contract: Run) -> None:
        """A task's exception names the attempt it came from (and the host and worker,
        where the interface's workers describe themselves), in a note."""
        master = contract.master()
        failing = master.submit_task(contract.tasks.fail, ("where?",))
        error = contract.error(master, failing)
        notes = getattr(error, "__notes__", None) or []
        assert any(f"attempt 1 of {failing.max_attempts}" in n for n in notes), (
            f"no note naming the attempt: {notes}")

    # -- lost workers, stopping ---------------------------------------------------------

    @slow
    def test_lost_worker(self, contract: Run) -> None:
        """A worker killed mid-task is a lost worker: retried up to max_attempts, then
        WorkerLostError; the interface reports it with worker_lost, and runs on."""
        tasks = contract.tasks
        master = contract.master()
        doomed = master.submit_task(tasks.kill_own_process, max_attempts=2)
        error = contract.error(master, doomed)
        assert isinstance(error, WorkerLostError), f"got {type(error).__name__}: {error}"
        reports = contract.reports.of_task(doomed)
        assert len(reports) == 2, f"expected 2 attempts, the interface saw {len(reports)}"
        said = [s for each in reports.values() for s in each]
        assert said == ["worker_lost", "worker_lost"], (
            f"a killed worker must be reported with worker_lost, not {said}")
        assert "attempt 2 of 2" in str(error), f"the error does not name the attempt: {error}"
        assert contract.ends.retried.get(id(doomed)) == 1
        later = [master.submit_task(tasks.square, (n,)) for n in range(2)]
        assert [contract.outcome(master, t) for t in later] == [0, 1], (
            "tasks after a lost worker must run (a slot the interface keeps must come back)")
        contract.ended_once([doomed, *later])
        with _alarms() as said:
            master.close()
        assert not said, f"a clean close() after a lost worker logged: {said}"

    def _stop(self, contract: Run, how: str) -> None:
        tasks = contract.tasks
        timeout = contract.target.timeout if how == "timeout" else None
        master = contract.master()
        self._needs(contract, master, "stop_task",
                    "stopping a task past its timeout" if timeout else "cancelling a running task")
        stopped = master.submit_task(tasks.hold, (contract.shared, "stopped", 600),
                                     timeout=timeout)
        neighbour = master.submit_task(tasks.hold, (contract.shared, "neighbour", 0.5))
        if how == "timeout":
            marker = contract.marker("stopped.pid")
            contract.wait(lambda: os.path.exists(marker) or stopped.done(),
                          "the task with a timeout to start or end")
            if not os.path.exists(marker):
                pytest.fail(f"{contract.target.label}: the task timed out before it started; "
                            "give Target.timeout more than the interface needs to start a task")
        pid = contract.pid_of("stopped")
        if how == "cancel":
            assert master.cancel(stopped), "cancel() of a running task returned False"
            expected: type = TaskCancelledError
        else:
            expected = TaskTimeoutError
        error = contract.error(master, stopped)
        assert isinstance(error, expected), f"got {type(error).__name__}: {error}"
        if how == "timeout":
            assert "attempt 1 of" in str(error), f"the error does not name the attempt: {error}"
        if contract.target.same_host:
            contract.wait(lambda: pid_gone(pid), f"the stopped task's process {pid} to end")
        assert contract.outcome(master, neighbour) == "neighbour", "stop_task touched another task"
        after = [master.submit_task(tasks.square, (n,)) for n in range(2)]
        assert [contract.outcome(master, t) for t in after] == [0, 1], (
            "tasks after a stop must run (a slot the interface keeps must come back)")
        contract.ended_once([stopped, neighbour, *after])

    @slow
    def test_timeout(self, contract: Run) -> None:
        """A task past its timeout fails with TaskTimeoutError and its process is stopped;
        the task beside it finishes untouched."""
        self._stop(contract, "timeout")

    @slow
    def test_cancel(self, contract: Run) -> None:
        """cancel() of a running task stops it (TaskCancelledError); no other task is touched."""
        self._stop(contract, "cancel")

    @slow
    def test_concurrency(self, contract: Run) -> None:
        """As many tasks run at once as the interface declares, and never more."""
        declared = contract.target.concurrency
        if declared is None:
            pytest.skip(f"{contract.target.label} declares no concurrency (Target.concurrency)")
        master = contract.master()
        wait = contract.target.deadline / 2
        runs = [master.submit_task(contract.tasks.rendezvous,
                                   (contract.shared, f"r{n}", declared, wait, 0.5))
                for n in range(declared + 1)]
        answers = [contract.outcome(master, t) for t in runs]
        assert all(met for met, _ in answers), (
            f"{declared} tasks never ran at once within {wait} s: {answers}")
        most = max(seen for _, seen in answers)
        assert most <= declared, f"{most} tasks ran at once, more than the {declared} declared"

    # -- status, cleanup ----------------------------------------------------------------

    def test_status(self, contract: Run) -> None:
        """get_status() has the master's keys with true counts, and the interface's keys
        clash with none of them."""
        tasks = contract.tasks
        master = contract.master()
        ok = master.submit_task(tasks.square, (3,))
        bad = master.submit_task(tasks.fail, ("status",))
        contract.wait(lambda: ok.done() and bad.done(), "both tasks to end")
        status = master.get_status()
        assert isinstance(status, dict)
        missing = [k for k in MASTER_STATUS_KEYS if k not in status and k != "interface_status"]
        assert not missing, f"get_status() lacks the master's keys {missing}"
        assert "interface_status" not in status, "the interface's get_status() failed"
        clashes = sorted(k for k in status if k.startswith("interface."))
        assert not clashes, f"the interface's get_status() uses the master's keys: {clashes}"
        counts = {k: status[k] for k in ("submitted", "queued", "running", "finished", "failed")}
        assert counts == {"submitted": 2, "queued": 0, "running": 0, "finished": 1, "failed": 1}
        assert all(isinstance(k, str) for k in status)

    def test_cleanup(self, contract: Run) -> None:
        """close() stops running tasks' processes and persistent workers, leaves no file."""
        tasks = contract.tasks
        master = contract.master()
        quick = master.submit_task(tasks.pid)
        worker_pid = contract.outcome(master, quick)
        running = master.submit_task(tasks.hold, (contract.shared, "abandoned", 600))
        held_pid = contract.pid_of("abandoned")
        master.close()
        error = contract.error(master, running)
        assert isinstance(error, MasterClosedError), f"got {type(error).__name__}: {error}"
        if contract.target.same_host:
            for pid, what in ((held_pid, "a running task's"), (worker_pid, "a worker's")):
                contract.wait(lambda p=pid: pid_gone(p),
                              f"{what} process {pid} to end after close()")
        contract.wait(lambda: not contract.leftovers(),
                      "the interface's files to be removed after close() "
                      f"(left: {contract.leftovers()})")

    # -- optional hooks that fail -------------------------------------------------------

    @pytest.mark.parametrize("hook", FAILABLE_HOOKS)
    def test_failing_hooks(self, contract: Run, hook: str) -> None:
        """An optional hook that raises is handled as the contract says, and tasks still end."""
        tasks = contract.tasks
        master = contract.master(failing=hook)
        self._needs(contract, master, hook, f"making {hook}() fail")
        count = contract.target.tasks
        first = [master.submit_task(tasks.square, (n,)) for n in range(count)]
        if hook == "get_available_workers":
            # That round's tasks went out with worker None; what the interface does with
            # None is its own affair (an error is fine), but every task ends, once.
            for task in first:
                contract.wait(task.done, f"{task.name} to end after get_available_workers failed")
            contract.ended_once(first)
            later = master.submit_task(tasks.square, (9,))
            assert contract.outcome(master, later) == 81
            return
        assert [contract.outcome(master, t) for t in first] == [n * n for n in range(count)]
        contract.ended_once(first)
        if hook == "get_status":
            status = master.get_status()
            assert status.get("interface_status") == "error", status
            assert status["submitted"] == count, status
        if hook == "cleanup":
            master.close()  # must not raise: a failing cleanup is logged and ignored
            assert master.closed


def _import_file(name: str, path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _alarms() -> Iterator[list[str]]:
    """What PyMW logs at warning level or above meanwhile."""
    said: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(f"{record.name}: {record.getMessage()}")

    handler = Catch(logging.WARNING)
    logger = logging.getLogger("pymw")
    logger.addHandler(handler)
    try:
        yield said
    finally:
        logger.removeHandler(handler)
