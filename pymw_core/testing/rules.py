"""The rules the contract kit checks: one entry per check, the text its failure quotes.

docs/writing-an-interface.md shows the same table (tests/testing/test_kit.py compares
them), so what a failure says is what the guide says. Standard library only: importing
this never imports pytest.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One check: its name (a ``Target.skip`` key), what it asserts, and its runs."""

    name: str
    text: str
    slow: bool = False
    #: The check's runs (``failing_hooks[cleanup]``), each skippable on its own; () for one.
    runs: tuple[str, ...] = ()


#: The optional hooks the ``failing_hooks`` check makes fail, one run each.
FAILABLE_HOOKS = (
    "get_available_workers",
    "reserve_worker",
    "worker_finished",
    "get_status",
    "cleanup",
    "attach_master",
)

#: How the ``slots`` check takes every slot's task away, one run each.
STOPS = ("lost_worker", "timeout", "cancel")

_RULES = (
    Rule("results", "each task ends exactly once with its own result; the interface reports "
         "each attempt at most once (`task_finished` or `worker_lost`)"),
    Rule("payloads", "arguments and results of several MB (bytes, nested objects) and empty "
         "ones arrive intact in both directions, each task with its own, a small task "
         "behind big ones too (size: `Target.payload_bytes`)"),
    Rule("exceptions", "a task's exception reaches `get_result` with its own type and "
         "message, the worker's traceback chained as `RemoteTraceback`; the next task "
         "still runs"),
    Rule("output", "what a task prints is in `task.stdout` and `task.stderr`, not swapped"),
    Rule("data_files", "a data file is in the task's working directory under its name"),
    Rule("data_files_read_at_submit", "a data file rewritten (same size, at once) or deleted "
         "after `submit_task` reaches the task as it was at submit"),
    Rule("modules", "a module given in `modules=` is shipped by value (the worker has no "
         "copy)"),
    Rule("scripts", "a PyMW 0.x script runs with `pymw_get_input()` / "
         "`pymw_return_output()`"),
    Rule("scripts_in_any_encoding", "a script with a PEP 263 `latin-1` coding line runs"),
    Rule("errors_say_where", "a task's exception has a note naming its attempt (`attempt 1 "
         "of 3`); the lost-worker and timeout checks also look for it in their errors, and "
         "the lost-worker check asserts that `close()` afterwards logs nothing at warning "
         "level"),
    Rule("lost_worker", "a worker killed mid-task (the task SIGKILLs its own process) is "
         "reported with `worker_lost`, retried up to `max_attempts`, then fails with "
         "`WorkerLostError`; later tasks still run", slow=True),
    Rule("timeout", "a task past its `timeout` fails with `TaskTimeoutError` and its process "
         "ends; the task beside it finishes untouched (one attempt); later tasks run. "
         "Needs `stop_task`", slow=True),
    Rule("cancel", "`cancel()` of a running task returns True and fails it with "
         "`TaskCancelledError`, its process ends; the task beside it finishes untouched "
         "(one attempt). Needs `stop_task`", slow=True),
    Rule("slots", "after as many tasks as `concurrency` lost their worker "
         "(`slots[lost_worker]`), timed out (`slots[timeout]`) or were cancelled "
         "(`slots[cancel]`), `concurrency` tasks still run at the same time: every slot "
         "came back", slow=True, runs=STOPS),
    Rule("concurrency", "with `concurrency=N` declared, N tasks run at the same time (they "
         "meet) and never N+1", slow=True),
    Rule("status", "`get_status()` has the master's keys with true counts, no "
         "`interface_status` error, and none of the interface's keys clash with the "
         "master's"),
    Rule("cleanup", "`close()` fails a running task with `MasterClosedError`, ends its "
         "process and the worker processes, and leaves no file in the master's `TMPDIR` "
         "(the kit gives each master a private one) nor in `watch_dirs`"),
    Rule("failing_hooks", "each optional hook the interface implements, made to raise (after "
         "doing its work; `get_available_workers` instead of answering, once), is handled "
         "as the hook table says and every task ends once; worker `None` of a failed "
         "`get_available_workers` round is no slot of the interface",
         runs=FAILABLE_HOOKS),
)

#: Every check of the kit by name, in the order the guide lists them.
RULES: dict[str, Rule] = {rule.name: rule for rule in _RULES}

#: The names a ``Target.skip`` key may use: a check, or one run of it.
SKIP_KEYS = frozenset(
    [*RULES, *(f"{rule.name}[{run}]" for rule in _RULES for run in rule.runs)])
