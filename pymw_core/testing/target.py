"""What the contract kit is told about the interface under test."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Every check of the kit, by the name a ``Target.skip`` entry uses.
CHECKS = (
    "results",
    "exceptions",
    "output",
    "data_files",
    "data_files_read_at_submit",
    "modules",
    "scripts",
    "scripts_in_any_encoding",
    "errors_say_where",
    "lost_worker",
    "timeout",
    "cancel",
    "concurrency",
    "status",
    "cleanup",
    "failing_hooks",
)

#: The optional hooks the ``failing_hooks`` check makes fail, one run each.
FAILABLE_HOOKS = (
    "get_available_workers",
    "reserve_worker",
    "worker_finished",
    "get_status",
    "cleanup",
    "attach_master",
)


@dataclass
class Target:
    """An interface to run the contract against, and what it promises.

    ``interface``: an installed interface's name (as in ``Master("name")``), or a class
    or factory called as ``interface(**options)`` to make an instance.
    ``options``: the interface's options.
    ``concurrency``: the most tasks it runs at once as configured by ``options`` (the
    ``concurrency`` check submits one more than that); None skips that check.
    ``shared_dir``: a directory that the master and its workers both see at the same
    path; the kit makes its marker files in a subdirectory (mode 0777: workers may run
    as another user), and the data files, modules and scripts it submits beside them.
    None: a directory under pytest's ``tmp_path``, which workers on this host see.
    ``same_host``: workers run as processes on this host, so the kit can see whether
    the processes its tasks ran in have ended.
    ``watch_dirs``: directories the interface writes in (a ``work_dir`` option, say):
    anything it adds there must be gone after ``close()``. The kit also gives each
    master a private ``TMPDIR`` and checks that it is left empty.
    ``deadline``: seconds any one wait of the kit may take (a task to end, a process to
    go); batch systems need more than the default.
    ``timeout``: the ``timeout`` (seconds) the ``timeout`` check gives its task.
    ``tasks``: how many tasks a check that runs several submits (keep it small for
    batch systems: a few jobs per check).
    ``skip``: checks this interface cannot pass, each with the reason (say the same in
    the interface's docs). A key may name a check (``"lost_worker"``) or one run of
    ``failing_hooks`` (``"failing_hooks[cleanup]"``).
    """

    interface: str | Callable[..., Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    concurrency: int | None = None
    shared_dir: str | None = None
    same_host: bool = True
    watch_dirs: Sequence[str] = ()
    deadline: float = 60.0
    timeout: float = 1.0
    tasks: int = 4
    skip: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = set(CHECKS) | {f"failing_hooks[{hook}]" for hook in FAILABLE_HOOKS}
        unknown = sorted(set(self.skip) - known)
        if unknown:
            raise ValueError(f"Target.skip names no check of the kit: {', '.join(unknown)} "
                             f"(checks: {', '.join(CHECKS)})")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1 or None, not {self.concurrency!r}")
        if self.tasks < 2:
            raise ValueError(f"tasks must be at least 2, not {self.tasks!r}")

    @property
    def label(self) -> str:
        """The interface's name, for messages."""
        if isinstance(self.interface, str):
            return self.interface
        return getattr(self.interface, "__qualname__", repr(self.interface))
