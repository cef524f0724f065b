"""Task events as log records: ``Master(observers=["log"])``.

Each record goes to the ``pymw.tasks`` logger with structured fields in ``extra``
(``pymw_event``, ``task_id``, ``task_name``, ``worker``, ``attempt`` and, at the end,
``seconds`` or ``error``), so a JSON formatter or a log shipper can use them as-is.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("pymw.tasks")


class TaskLogger:
    """Logs submitted/started/retried at DEBUG, done at INFO, failures at WARNING."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or log

    def _emit(self, level: int, event: str, task: Any, **fields: Any) -> None:
        if not self.log.isEnabledFor(level):
            return
        extra = {
            "pymw_event": event,
            "task_id": task.id,
            "task_name": task.name,
            "worker": repr(task.worker),
            "attempt": task.attempts,
            **fields,
        }
        details = " ".join(f"{k}={v}" for k, v in fields.items())
        self.log.log(level, "task %s %s%s", task.name, event, f" {details}" if details else "",
                     extra=extra)

    def on_task_submitted(self, task: Any) -> None:
        self._emit(logging.DEBUG, "submitted", task)

    def on_task_started(self, task: Any, worker: Any) -> None:
        self._emit(logging.DEBUG, "started", task)

    def on_task_retried(self, task: Any, reason: str) -> None:
        self._emit(logging.WARNING, "retried", task, reason=reason)

    def on_task_done(self, task: Any) -> None:
        self._emit(logging.INFO, "done", task, seconds=round(task.get_execution_time() or 0, 6))

    def on_task_failed(self, task: Any, error: BaseException) -> None:
        self._emit(logging.WARNING, "failed", task, error=f"{type(error).__name__}: {error}")

    def on_worker_up(self, worker: Any) -> None:
        if self.log.isEnabledFor(logging.INFO):
            self.log.info("worker up: %r", worker, extra={"pymw_event": "worker_up",
                                                          "worker": repr(worker)})

    def on_worker_lost(self, worker: Any, reason: str) -> None:
        self.log.warning("worker lost: %r: %s", worker, reason,
                         extra={"pymw_event": "worker_lost", "worker": repr(worker),
                                "reason": reason})
