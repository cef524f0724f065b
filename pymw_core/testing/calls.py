"""What the master asked of the interface under test, and what the interface said back.

The kit puts the interface behind :func:`watched`, a wrapper with exactly the
interface's hooks, each with the interface's own parameter names (pluggy passes
arguments by name, so a missing hook stays missing and a short signature stays
short). Every hook call and every report (``task_finished`` / ``worker_lost``) goes
into a :class:`HookLog`; when a check fails, the log names the first call that broke
a rule the kit can see from outside. Standard library only.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymw_core.hookspecs import INTERFACE_HOOKS
from pymw_core.task import Attempt

REPORTS = ("task_finished", "worker_lost")
_SHORT = 70  # characters of a worker's or a value's repr in messages
_NOT_A_LIST = object()


class HookFailure(RuntimeError):
    """Raised on purpose by a hook the ``failing_hooks`` check makes fail."""


def short(value: Any) -> str:
    """``repr(value)``, cut to a line."""
    try:
        text = repr(value)
    except Exception as exc:  # a worker's repr may itself be broken
        text = f"<unprintable {type(value).__name__}: {exc}>"
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def attempt_text(attempt: Any) -> str:
    return f"{attempt.name} (attempt {attempt.number})"


@dataclass
class Call:
    """One hook call (or one report), as the kit saw it."""

    seq: int
    hook: str
    args: str
    started: float
    ended: float | None = None
    outcome: str = ""
    raised: bool = False
    injected: bool = False  # raised by the kit itself (failing_hooks)
    worker_is_none: bool = False
    offered: Any = _NOT_A_LIST  # what get_available_workers returned
    attempt: Any = None

    def text(self) -> str:
        return f"{self.hook}({self.args}) [call #{self.seq}]{self.outcome}"


class HookLog:
    """Every hook call and report of one master's interface, in the order they began."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.attempts: dict[int, Attempt] = {}
        self.t0 = time.monotonic()

    # -- recording --------------------------------------------------------------------

    def begin(self, hook: str, kwargs: dict[str, Any]) -> Call:
        parts = []
        for name, value in kwargs.items():
            parts.append(attempt_text(value) if name == "task" else short(value))
        worker_is_none = "worker" in kwargs and kwargs["worker"] is None
        attempt = kwargs.get("task")
        with self.lock:
            call = Call(len(self.calls) + 1, hook, ", ".join(parts), time.monotonic(),
                        worker_is_none=worker_is_none, attempt=attempt)
            self.calls.append(call)
            if attempt is not None:
                self.attempts.setdefault(attempt.id, attempt)
        return call

    def end(self, call: Call, result: Any = None, error: BaseException | None = None) -> None:
        call.ended = time.monotonic()
        if error is not None:
            call.raised = True
            call.injected = isinstance(error, HookFailure)
            call.outcome = f" raised {type(error).__name__}: {error}"
        elif call.hook == "get_available_workers":
            call.offered = list(result) if isinstance(result, list) else _NOT_A_LIST
            call.outcome = f" -> {short(result)}"
        elif result is not None:
            call.outcome = f" -> {short(result)}"

    def report(self, attempt: Attempt, what: str, args: tuple, kwargs: dict) -> Call:
        error = args[0] if args else kwargs.get("task_err")
        failed = what == "task_finished" and error is not None
        detail = f", {type(error).__name__}" if failed else ""
        call = self.begin(what, {"task": attempt})
        call.args += detail
        call.ended = call.started
        return call

    # -- reading ----------------------------------------------------------------------

    def snapshot(self) -> list[Call]:
        with self.lock:
            return list(self.calls)

    def of_task(self, task: Any) -> dict[int, list[str]]:
        """``{attempt id: [reports]}`` for each attempt of ``task`` the interface was given."""
        found: dict[int, list[str]] = {}
        for call in self.snapshot():
            attempt = call.attempt
            if attempt is None or attempt.task is not task:
                continue
            said = found.setdefault(attempt.id, [])
            if call.hook in REPORTS:
                said.append(call.hook)
        return found

    def offers(self) -> list[Call]:
        """The calls of ``get_available_workers`` that answered with a list."""
        return [c for c in self.snapshot()
                if c.hook == "get_available_workers" and c.offered is not _NOT_A_LIST]

    def broken(self) -> str | None:
        """The first call that broke a rule the kit sees from outside, and how."""
        reported: dict[int, Call] = {}
        failed_round: Call | None = None
        none_back: Call | None = None
        none_is_a_worker = False
        for call in self.snapshot():
            if call.hook in REPORTS:
                first = reported.get(call.attempt.id)
                if first is not None:
                    return (f"{first.text()} was followed by {call.text()}: an attempt is "
                            "reported once (task_finished or worker_lost)")
                reported[call.attempt.id] = call
            elif call.hook == "get_available_workers" and call.ended is not None:
                if call.offered is _NOT_A_LIST:
                    failed_round = failed_round or call
                elif any(w is None for w in call.offered):
                    if failed_round is None:
                        none_is_a_worker = True  # the interface's own worker named None
                    elif none_back is not None and not none_is_a_worker:
                        return (f"{none_back.text()} was followed by a task matched to None: "
                                f"{call.text()} offers None as a worker, but None is only "
                                "the worker of the round in which get_available_workers "
                                f"failed ({failed_round.text()}), not a slot to hand out")
            elif (call.hook == "worker_finished" and call.worker_is_none
                  and failed_round is not None and none_back is None):
                none_back = call
        return None

    def describe(self, tail: int = 8) -> str:
        """What a failure message adds: the rule-breaking call, hooks that raised or still
        run, attempts with no report, and the last calls."""
        now = time.monotonic()
        calls = self.snapshot()
        lines = []
        broken = self.broken()
        if broken:
            lines.append(f"the hook call that broke it: {broken}")
        raised = [c for c in calls if c.raised and not c.injected]
        if raised:
            lines.append(f"the first hook call that raised: {raised[0].text()}")
        running = [c for c in calls if c.ended is None]
        for call in running[:3]:
            lines.append(f"still running: {call.text()}, called {now - call.started:.1f} s ago")
        reported = {c.attempt.id for c in calls if c.hook in REPORTS}
        waiting = [c for c in calls if c.hook == "execute_task" and c.ended is not None
                   and not c.raised and c.attempt.id not in reported
                   and c.attempt.task.state not in _DONE]
        for call in waiting[:3]:
            lines.append(f"no report yet: {call.text()} returned {now - call.ended:.1f} s ago "
                         "and neither task_finished nor worker_lost came for that attempt")
        if calls:
            lines.append(f"the last hook calls the kit saw (of {len(calls)}):")
            lines += [f"    +{c.started - self.t0:.2f}s {c.text()}" for c in calls[-tail:]]
        else:
            lines.append("the interface got no hook call at all")
        return "\n".join(lines)


_DONE = ("finished", "failed", "cancelled")


class _Handle:
    """The attempt as the interface sees it: every attribute is the attempt's own, and
    its two reports are recorded on the way."""

    __slots__ = ("_attempt", "_log")

    def __init__(self, attempt: Attempt, log: HookLog) -> None:
        object.__setattr__(self, "_attempt", attempt)
        object.__setattr__(self, "_log", log)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(handle, Attempt), as deliver() asks
        return Attempt

    def task_finished(self, *args: Any, **kwargs: Any) -> None:
        self._log.report(self._attempt, "task_finished", args, kwargs)
        self._attempt.task_finished(*args, **kwargs)

    def worker_lost(self, *args: Any, **kwargs: Any) -> None:
        self._log.report(self._attempt, "worker_lost", args, kwargs)
        self._attempt.worker_lost(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._attempt, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._attempt, name, value)

    def __repr__(self) -> str:
        return repr(self._attempt)


def _parameters(function: Callable[..., Any]) -> list[str]:
    """The names pluggy would pass to ``function`` (a bound method: no ``self``)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []
    return [p.name for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def watched(interface: Any, log: HookLog, failing: str | None = None) -> Any:
    """``interface`` behind a wrapper with the same hooks, each call logged; ``failing``
    raises after each call (``get_available_workers`` raises instead of answering, once)."""
    present = [h for h in INTERFACE_HOOKS if callable(getattr(interface, h, None))]
    handles: dict[int, _Handle] = {}
    state = {"failed_once": False}

    def handle(attempt: Attempt) -> _Handle:
        with log.lock:
            found = handles.get(attempt.id)
            if found is None:
                found = handles[attempt.id] = _Handle(attempt, log)
            return found

    def forward(hook: str) -> Callable[..., Any]:
        real = getattr(interface, hook)

        def call(self: Any, **kwargs: Any) -> Any:
            record = log.begin(hook, kwargs)
            if "task" in kwargs:
                kwargs["task"] = handle(kwargs["task"])
            try:
                if hook == failing == "get_available_workers" and not state["failed_once"]:
                    state["failed_once"] = True
                    raise HookFailure("get_available_workers failed on purpose (contract kit)")
                answer = real(**kwargs)
                if hook == failing and hook != "get_available_workers":
                    raise HookFailure(f"{hook} failed on purpose (contract kit)")
            except BaseException as exc:
                log.end(record, error=exc)
                raise
            log.end(record, answer)
            return answer

        # pluggy passes hook arguments by name: the wrapper takes the interface's own.
        names = [n for n in _parameters(real) if n.isidentifier()]
        params = "".join(f", {n}" for n in names)
        args = ", ".join(f"{n}={n}" for n in names)
        scope: dict[str, Any] = {"call": call}
        exec(f"def {hook}(self{params}):\n    return call(self, {args})\n", scope)
        return scope[hook]

    def getattr_(self: Any, name: str) -> Any:
        return getattr(interface, name)

    namespace: dict[str, Any] = {h: forward(h) for h in present}
    namespace["__getattr__"] = getattr_
    namespace["__repr__"] = lambda self: f"<watched {interface!r}>"
    cls = type(f"Watched{type(interface).__name__}", (), namespace)
    return cls()
