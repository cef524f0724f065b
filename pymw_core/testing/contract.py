"""The interface contract as pytest checks: subclass :class:`InterfaceContract`.

Each ``test_*`` method is one check of docs/writing-an-interface.md (one rule of
:data:`pymw_core.testing.rules.RULES`), run on a fresh master. Checks that need a hook
the interface lacks skip, saying which hook; checks the interface's own tests declare
it cannot pass (``Target.skip``) skip with that reason. A failure names the rule, what
went wrong and the hook calls the kit saw (the first one that broke a rule, if any).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
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
from pymw_core.processes import pid_gone
from pymw_core.testing.harness import Run
from pymw_core.testing.rules import RULES
from pymw_core.testing.target import FAILABLE_HOOKS, STOPS, Target

slow = pytest.mark.pymw_contract_slow
_Failed = pytest.fail.Exception


def check(function: Callable[..., None]) -> Callable[..., None]:
    """Mark a method as the check of the rule it is named after: its failures (an assert,
    a deadline, an unexpected exception) are reported with the rule and the hook calls."""
    name = function.__name__.removeprefix("test_")
    rule = RULES[name]  # KeyError here: a check without a rule in rules.py
    if rule.slow:
        function = slow(function)

    @functools.wraps(function)
    def run(self: Any, contract: Run, **params: Any) -> None:
        key = name + "".join(f"[{v}]" for v in params.values())
        try:
            function(self, contract, **params)
        except (Exception, _Failed) as exc:
            text = str(exc) if isinstance(exc, (AssertionError, _Failed)) else (
                f"{type(exc).__name__}: {exc}")
            raise _Failed(contract.explain(key, text), pytrace=False) from None

    return run


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
        if call is not None:
            keys.insert(0, name + "".join(f"[{v}]" for v in call.params.values()))
            if name == "slots":  # stopping a task the interface cannot stop: the same skip
                keys.append(call.params["how"])
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

    @staticmethod
    def _slots(contract: Run, check: str) -> int:
        declared = contract.target.concurrency
        if declared is None:
            pytest.skip(f"{contract.target.label} declares no concurrency (Target.concurrency), "
                        f"which {check} needs")
        return declared

    # -- results, payloads, errors, output --------------------------------------------

    @check
    def test_results(self, contract: Run) -> None:
        """Every task ends exactly once with its own result, arguments intact."""
        tasks = contract.tasks
        master = contract.master()
        squares = [master.submit_task(tasks.square, (n,)) for n in range(contract.target.tasks)]
        echo = master.submit_task(tasks.echo, (b"\x00bytes", {"k": [1.5, None]}, "é"))
        for n, task in enumerate(squares):
            got = contract.outcome(master, task, len(squares))
            assert got == n * n, f"{task.name} returned {got!r}, not square({n}) = {n * n}"
        got = contract.outcome(master, echo)
        assert got == ((b"\x00bytes", {"k": [1.5, None]}, "é"), {}), f"echo returned {got!r}"
        contract.ended_once([*squares, echo])

    @check
    def test_payloads(self, contract: Run) -> None:
        """Big and empty arguments and results travel intact, both ways, each to its task."""
        tasks = contract.tasks
        size = contract.target.payload_bytes
        big = tasks.blob(1, size)
        both = tasks.blob(2, size)
        tree = tasks.nested(3, size // 2)
        master = contract.master()
        sent = [  # (task, what it is, the answer it must give)
            (master.submit_task(tasks.echo, (b"",)), "an empty argument echoed",
             ((b"",), {})),
            (master.submit_task(tasks.blob, (4, 0)), "an empty result", b""),
            (master.submit_task(tasks.digest, (big,)), f"a {size}-byte argument",
             tasks.digest(big)),
            (master.submit_task(tasks.blob, (5, size)), f"a {size}-byte result",
             tasks.blob(5, size)),
            (master.submit_task(tasks.echo, (both,)), f"a {size}-byte argument echoed",
             ((both,), {})),
            (master.submit_task(tasks.echo, (tree,)), "nested objects of about "
             f"{size // 2} bytes echoed", ((tree,), {})),
            (master.submit_task(tasks.square, (12,)), "a small task behind the big ones", 144),
        ]
        for task, what, expected in sent:
            got = contract.outcome(master, task, len(sent))
            assert got == expected, f"{what} ({task.name}) came back wrong: {_diff(expected, got)}"
        contract.ended_once([task for task, _, _ in sent])

    @check
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

    @check
    def test_output(self, contract: Run) -> None:
        """What a task prints reaches task.stdout and task.stderr."""
        master = contract.master()
        task = master.submit_task(contract.tasks.chatter, ("parrot",))
        assert contract.outcome(master, task) == "parrot"
        assert "out:parrot" in task.stdout, f"stdout was {task.stdout!r}"
        assert "err:parrot" in task.stderr, f"stderr was {task.stderr!r}"
        assert "err:" not in task.stdout and "out:" not in task.stderr

    @check
    def test_data_files(self, contract: Run) -> None:
        """A data file is in the task's working directory, under its own name."""
        data = contract.files / "contract-input.txt"
        data.write_text("data file contents ✓\n", encoding="utf-8")
        master = contract.master()
        task = master.submit_task(contract.tasks.read_data, ("contract-input.txt",),
                                  data_files=[str(data)])
        assert contract.outcome(master, task) == "data file contents ✓\n"

    @check
    def test_data_files_read_at_submit(self, contract: Run) -> None:
        """A data file is read when submit_task returns: rewriting it at once (same size,
        same clock tick) or deleting it changes nothing for a task already submitted."""
        data = contract.files / "contract-versions.txt"
        gone = contract.files / "contract-deleted.txt"
        master = contract.master()
        # Every declared slot kept busy until the files have changed: an interface that
        # reads them when a task starts, not at submit, cannot start one in between (on
        # a loaded machine a worker may otherwise run each task before the next rewrite).
        slots = contract.target.concurrency or 0
        gates = [master.submit_task(contract.tasks.gate, (contract.shared, f"gate{n}", 60))
                 for n in range(slots)]
        for n in range(slots):
            contract.pid_of(f"gate{n}", slots)
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
        (Path(contract.shared) / "gate.open").write_text("", encoding="utf-8")
        assert [contract.outcome(master, t) for t in gates] == [f"gate{n}" for n in range(slots)]
        assert [contract.outcome(master, t) for t in versions] == ["v1", "v2", "v3"]
        assert contract.outcome(master, deleted) == "deleted after submit"

    @check
    def test_modules(self, contract: Run) -> None:
        """A module given in modules= is shipped by value: the worker has no copy of it."""
        name = f"pymw_contract_module_{os.getpid()}_{id(contract)}"
        path = contract.files / f"{name}.py"
        path.write_text(contract.tasks.MODULE.format(value=name), encoding="utf-8")
        module = _import_file(name, path)
        master = contract.master()
        task = master.submit_task(contract.tasks.shipped_value, (name,), modules=[module])
        assert contract.outcome(master, task) == name

    @check
    def test_scripts(self, contract: Run) -> None:
        """A PyMW 0.x script runs with pymw_get_input() and pymw_return_output()."""
        script = contract.files / "contract_script.py"
        script.write_text(contract.tasks.SCRIPT, encoding="utf-8")
        master = contract.master()
        task = master.submit_task(str(script), [1, 2, 3])
        assert contract.outcome(master, task) == 6
        assert "script ran" in task.stdout

    @check
    def test_scripts_in_any_encoding(self, contract: Run) -> None:
        """A script with a PEP 263 coding line (latin-1, as many 0.x scripts are) runs."""
        script = contract.files / "contract_latin1.py"
        script.write_bytes(contract.tasks.LATIN1_SCRIPT.encode("latin-1"))
        master = contract.master()
        task = master.submit_task(str(script), "caf")
        assert contract.outcome(master, task) == "café"

    @check
    def test_errors_say_where(self, contract: Run) -> None:
        """A task's exception names the attempt it came from (and the host and worker,
        where the interface's workers describe themselves), in a note."""
        master = contract.master()
        failing = master.submit_task(contract.tasks.fail, ("where?",))
        error = contract.error(master, failing)
        notes = getattr(error, "__notes__", None) or []
        assert any(f"attempt 1 of {failing.max_attempts}" in n for n in notes), (
            f"no note naming the attempt: {notes}")

    # -- lost workers, stopping, slots -------------------------------------------------

    @check
    def test_lost_worker(self, contract: Run) -> None:
        """A worker killed mid-task is a lost worker: retried up to max_attempts, then
        WorkerLostError; the interface reports it with worker_lost, and runs on."""
        tasks = contract.tasks
        master = contract.master()
        doomed = master.submit_task(tasks.kill_own_process, max_attempts=2)
        error = contract.error(master, doomed, 2)
        assert isinstance(error, WorkerLostError), f"got {type(error).__name__}: {error}"
        reports = contract.log.of_task(doomed)
        assert len(reports) == 2, f"expected 2 attempts, the interface saw {len(reports)}"
        said = [s for each in reports.values() for s in each]
        assert said == ["worker_lost", "worker_lost"], (
            f"a killed worker must be reported with worker_lost, not {said}")
        assert "attempt 2 of 2" in str(error), f"the error does not name the attempt: {error}"
        assert contract.ends.retried.get(id(doomed)) == 1
        later = [master.submit_task(tasks.square, (n,)) for n in range(2)]
        assert [contract.outcome(master, t, 2) for t in later] == [0, 1], (
            "tasks after a lost worker must run (a slot the interface keeps must come back)")
        contract.ended_once([doomed, *later])
        with _alarms() as said:
            contract.call(master.close, "close()")
        assert not said, f"a clean close() after a lost worker logged: {said}"

    def _stop(self, contract: Run, how: str) -> None:
        tasks = contract.tasks
        timeout = contract.target.timeout if how == "timeout" else None
        master = contract.master()
        self._needs(contract, master, "stop_task",
                    "stopping a task past its timeout" if timeout else "cancelling a running task")
        stopped = master.submit_task(tasks.hold, (contract.shared, "stopped", 600),
                                     timeout=timeout)
        neighbour = master.submit_task(tasks.hold, (contract.shared, "neighbour", 1.0))
        if how == "timeout":
            marker = contract.marker("stopped.pid")
            contract.wait(lambda: os.path.exists(marker) or stopped.done(),
                          "the task with a timeout to start or end")
            if not os.path.exists(marker):
                pytest.fail(f"{contract.target.label}: the task timed out before it started; "
                            "give Target.timeout more than the interface needs to start a task")
        pid = contract.pid_of("stopped")
        if how == "cancel":
            if (contract.target.concurrency or 1) > 1:  # running beside it at the cancel
                contract.pid_of("neighbour")
            cancelled = contract.call(lambda: master.cancel(stopped), "cancel() of a running task")
            assert cancelled, "cancel() of a running task returned False"
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
        runs = contract.log.of_task(neighbour)
        assert len(runs) == 1, (f"stop_task touched another task: {neighbour.name} ran "
                                f"{len(runs)} attempts ({runs})")
        after = [master.submit_task(tasks.square, (n,)) for n in range(2)]
        assert [contract.outcome(master, t, 2) for t in after] == [0, 1], (
            "tasks after a stop must run (a slot the interface keeps must come back)")
        contract.ended_once([stopped, neighbour, *after])

    @check
    def test_timeout(self, contract: Run) -> None:
        """A task past its timeout fails with TaskTimeoutError and its process is stopped;
        the task beside it finishes untouched."""
        self._stop(contract, "timeout")

    @check
    def test_cancel(self, contract: Run) -> None:
        """cancel() of a running task stops it (TaskCancelledError); no other task is touched."""
        self._stop(contract, "cancel")

    @pytest.mark.parametrize("how", STOPS)
    @check
    def test_slots(self, contract: Run, how: str) -> None:
        """After every slot's task was stopped (or lost its worker), as many tasks as there
        are slots still run at the same time: each slot came back."""
        tasks = contract.tasks
        slots = self._slots(contract, "taking every slot's task away")
        master = contract.master()
        if how != "lost_worker":
            self._needs(contract, master, "stop_task", f"stopping tasks ({how})")
        if how == "lost_worker":
            doomed = [master.submit_task(tasks.kill_own_process, max_attempts=1)
                      for _ in range(slots)]
            expected: type = WorkerLostError
        else:
            timeout = contract.target.timeout if how == "timeout" else None
            doomed = [master.submit_task(tasks.hold, (contract.shared, f"doomed{n}", 600),
                                         timeout=timeout) for n in range(slots)]
            expected = TaskTimeoutError if how == "timeout" else TaskCancelledError
            if how == "cancel":
                for n in range(slots):
                    contract.pid_of(f"doomed{n}", slots)
                for task in doomed:
                    assert contract.call(lambda t=task: master.cancel(t), f"cancel({task.name})"), (
                        f"cancel() of the running {task.name} returned False")
        for task in doomed:
            error = contract.error(master, task, slots)
            assert isinstance(error, expected), (
                f"{task.name}: expected {expected.__name__}, got {type(error).__name__}: {error}")
        offered_before = len({id(w) for c in contract.log.offers() for w in c.offered})
        # Rounds of `slots` tasks that each wait until all of them have started: they can
        # only all meet if every slot is back. Each is submitted once the one before it
        # runs, so none is queued behind a busy worker (a prefetch queue) from the start;
        # a round that still does not meet (a replacement worker was not up yet) ends by
        # itself and the next one tries again, until the deadline.
        seconds = contract.target.seconds(slots)
        patience = contract.target.per_task * slots + 1  # how long a round's stage waits
        deadline = time.monotonic() + seconds
        meet: list[Any] = []
        rounds: list[int] = []
        try:
            while True:
                folder = os.path.join(contract.shared, f"round{len(rounds)}")
                os.mkdir(folder)
                os.chmod(folder, 0o777)
                batch: list[Any] = []
                for n in range(slots):
                    batch.append(master.submit_task(
                        tasks.rendezvous, (folder, f"m{n}", slots, patience * slots, 0)))
                    marker = os.path.join(folder, f"m{n}.started")
                    until = time.monotonic() + patience
                    while not os.path.exists(marker) and time.monotonic() < until:
                        time.sleep(0.02)
                    if not os.path.exists(marker):
                        break
                meet += batch
                rounds.append(len([n for n in os.listdir(folder) if n.endswith(".started")]))
                answers = [contract.outcome(master, t, slots) for t in batch]
                if len(batch) == slots and all(met for met, _ in answers):
                    break
                if time.monotonic() >= deadline:
                    pytest.fail(f"{contract.target.label}: in no round did {slots} tasks run at "
                                f"the same time within {seconds:g} s after {slots} task(s) "
                                f"{_STOPPED[how]} ({contract.target.budget(slots)}); tasks "
                                f"that started at the same time in each round: {rounds}")
        except _Failed as exc:
            offers = contract.log.offers()
            detail = ""
            if offers:
                detail = (f"\nget_available_workers() had offered {offered_before} "
                          f"different workers before; its last answer: {offers[-1].text()}")
            raise _Failed(f"{exc}\na slot did not come back after {slots} task(s) "
                          f"{_STOPPED[how]}{detail}", pytrace=False) from None
        contract.ended_once([*doomed, *meet])

    @check
    def test_concurrency(self, contract: Run) -> None:
        """As many tasks run at once as the interface declares, and never more."""
        declared = self._slots(contract, "this check")
        master = contract.master()
        wait = contract.target.seconds(declared + 1)
        runs = [master.submit_task(contract.tasks.rendezvous,
                                   (contract.shared, f"r{n}", declared, wait, 0.5))
                for n in range(declared + 1)]
        answers = [contract.outcome(master, t, declared + 1) for t in runs]
        assert all(met for met, _ in answers), (
            f"{declared} tasks never ran at once within {wait} s: {answers}")
        most = max(seen for _, seen in answers)
        assert most <= declared, f"{most} tasks ran at once, more than the {declared} declared"

    # -- status, cleanup ----------------------------------------------------------------

    @check
    def test_status(self, contract: Run) -> None:
        """get_status() has the master's keys with true counts, and the interface's keys
        clash with none of them."""
        tasks = contract.tasks
        master = contract.master()
        ok = master.submit_task(tasks.square, (3,))
        bad = master.submit_task(tasks.fail, ("status",))
        contract.wait(lambda: ok.done() and bad.done(), "both tasks to end", 2)
        status = contract.call(master.get_status, "get_status()")
        assert isinstance(status, dict)
        missing = [k for k in MASTER_STATUS_KEYS if k not in status and k != "interface_status"]
        assert not missing, f"get_status() lacks the master's keys {missing}"
        assert "interface_status" not in status, "the interface's get_status() failed"
        clashes = sorted(k for k in status if k.startswith("interface."))
        assert not clashes, f"the interface's get_status() uses the master's keys: {clashes}"
        counts = {k: status[k] for k in ("submitted", "queued", "running", "finished", "failed")}
        assert counts == {"submitted": 2, "queued": 0, "running": 0, "finished": 1, "failed": 1}
        assert all(isinstance(k, str) for k in status)

    @check
    def test_cleanup(self, contract: Run) -> None:
        """close() stops running tasks' processes and persistent workers, leaves no file."""
        tasks = contract.tasks
        master = contract.master()
        quick = master.submit_task(tasks.pid)
        worker_pid = contract.outcome(master, quick)
        running = master.submit_task(tasks.hold, (contract.shared, "abandoned", 600))
        held_pid = contract.pid_of("abandoned")
        contract.call(master.close, "close()")
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
    @check
    def test_failing_hooks(self, contract: Run, hook: str) -> None:
        """An optional hook that raises is handled as the contract says, and tasks still end."""
        tasks = contract.tasks
        master = contract.master(failing=hook)
        self._needs(contract, master, hook, f"making {hook}() fail")
        count = contract.target.tasks
        first = [master.submit_task(tasks.square, (n,)) for n in range(count)]
        if hook == "get_available_workers":
            # That round's tasks went out with worker None; what the interface does with
            # None is its own affair (an error is fine), but every task ends, once, and
            # None is no slot afterwards.
            for task in first:
                contract.wait(task.done, f"{task.name} to end after get_available_workers failed",
                              count)
            contract.ended_once(first)
            later = [master.submit_task(tasks.square, (n,)) for n in range(count)]
            assert [contract.outcome(master, t, count) for t in later] == [
                n * n for n in range(count)]
            contract.ended_once(later)
            broken = contract.log.broken()
            assert broken is None, broken
            return
        got = [contract.outcome(master, t, count) for t in first]
        assert got == [n * n for n in range(count)], got
        contract.ended_once(first)
        if hook == "get_status":
            status = contract.call(master.get_status, "get_status()")
            assert status.get("interface_status") == "error", status
            assert status["submitted"] == count, status
        if hook == "cleanup":
            contract.call(master.close, "close()")  # must not raise: logged and ignored
            assert master.closed


_STOPPED = {"lost_worker": "lost their workers", "timeout": "timed out",
            "cancel": "were cancelled"}


def _diff(expected: Any, got: Any) -> str:
    """How ``got`` differs from ``expected``, in a line (never megabytes of repr)."""
    if isinstance(expected, tuple) and isinstance(got, tuple) and len(expected) == len(got):
        for index, (want, have) in enumerate(zip(expected, got, strict=True)):
            if want != have:
                return f"item {index}: {_diff(want, have)}"
    if isinstance(expected, bytes) and isinstance(got, (bytes, bytearray)):
        if len(got) != len(expected):
            return f"{len(got)} bytes instead of {len(expected)}"
        first = next(i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
        return f"{len(got)} bytes, the first difference at byte {first}"
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in expected:
            if key not in got:
                return f"key {key!r} missing"
            if expected[key] != got[key]:
                return f"under key {key!r}: {_diff(expected[key], got[key])}"
        return f"extra keys {sorted(map(repr, set(got) - set(expected)))[:5]}"
    if isinstance(expected, list) and isinstance(got, list):
        if len(got) != len(expected):
            return f"a list of {len(got)} items instead of {len(expected)}"
        for index, (want, have) in enumerate(zip(expected, got, strict=True)):
            if want != have:
                return f"item {index}: {_diff(want, have)}"
    text = repr(got)
    return f"{type(got).__name__} {text[:120]}{'...' if len(text) > 120 else ''}"


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
