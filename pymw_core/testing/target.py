"""What the contract kit is told about the interface under test."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymw_core.testing.rules import FAILABLE_HOOKS, RULES, SKIP_KEYS, STOPS

#: Every check of the kit, by the name a ``Target.skip`` entry uses.
CHECKS = tuple(RULES)

__all__ = ["CHECKS", "FAILABLE_HOOKS", "STOPS", "Target"]


@dataclass
class Target:
    """An interface to run the contract against, and what it promises.

    ``interface``: an installed interface's name (as in ``Master("name")``), or a class
    or factory called as ``interface(**options)`` to make an instance.
    ``options``: the interface's options.
    ``concurrency``: the most tasks it runs at once as configured by ``options`` (its
    slots): the ``concurrency`` check submits one more than that, the ``slots`` check
    stops that many and then needs that many running together; None skips both.
    ``shared_dir``: a directory that the master and its workers both see at the same
    path; the kit makes its marker files in a subdirectory (mode 0777: workers may run
    as another user), and the data files, modules and scripts it submits beside them.
    None: a directory under pytest's ``tmp_path``, which workers on this host see.
    ``same_host``: workers run as processes on this host, so the kit can see whether
    the processes its tasks ran in have ended.
    ``watch_dirs``: directories the interface writes in (a ``work_dir`` option, say):
    anything it adds there must be gone after ``close()``. The kit also gives each
    master a private ``TMPDIR`` and checks that it is left empty.
    ``startup``: seconds a fresh master may take to run its first small task (start
    workers, submit a job); ``per_task``: seconds each further task of a wait may add
    (a small task, or one moving ``payload_bytes``). A wait for ``n`` tasks fails after
    ``startup + n * per_task`` seconds, so a hanging interface fails in seconds.
    ``deadline``: if given, every wait takes at most this instead.
    ``timeout``: the ``timeout`` (seconds) the ``timeout`` checks give their tasks.
    ``tasks``: how many tasks a check that runs several submits (keep it small for
    batch systems: a few jobs per check).
    ``payload_bytes``: the size of the big arguments and results of the ``payloads``
    check (several MB by default).
    ``skip``: checks this interface cannot pass, each with the reason (say the same in
    the interface's docs). A key names a check (``"lost_worker"``) or one run of a
    check with runs (``"failing_hooks[cleanup]"``, ``"slots[lost_worker]"``).
    """

    interface: str | Callable[..., Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    concurrency: int | None = None
    shared_dir: str | None = None
    same_host: bool = True
    watch_dirs: Sequence[str] = ()
    startup: float = 10.0
    per_task: float = 2.0
    deadline: float | None = None
    timeout: float = 1.0
    tasks: int = 4
    payload_bytes: int = 4 << 20
    skip: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.skip) - SKIP_KEYS)
        if unknown:
            raise ValueError(f"Target.skip names no check of the kit: {', '.join(unknown)} "
                             f"(checks: {', '.join(CHECKS)})")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1 or None, not {self.concurrency!r}")
        if self.tasks < 2:
            raise ValueError(f"tasks must be at least 2, not {self.tasks!r}")
        for name in ("startup", "per_task"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a number of seconds above 0, "
                                 f"not {getattr(self, name)!r}")
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"deadline must be None or seconds above 0, not {self.deadline!r}")
        if self.payload_bytes < 1 << 16:
            raise ValueError(f"payload_bytes must be at least 65536, not {self.payload_bytes!r}")

    @property
    def label(self) -> str:
        """The interface's name, for messages."""
        if isinstance(self.interface, str):
            return self.interface
        return getattr(self.interface, "__qualname__", repr(self.interface))

    def seconds(self, tasks: int = 1) -> float:
        """How long the kit waits for something that needs ``tasks`` tasks to run."""
        if self.deadline is not None:
            return self.deadline
        return round(self.startup + max(tasks, 1) * self.per_task, 1)

    def budget(self, tasks: int = 1) -> str:
        """How :meth:`seconds` came about, for a failure message."""
        if self.deadline is not None:
            return f"Target.deadline={self.deadline:g}"
        return (f"Target.startup={self.startup:g} + {max(tasks, 1)} task(s) x "
                f"Target.per_task={self.per_task:g}")
