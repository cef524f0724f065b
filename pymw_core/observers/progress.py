"""A tqdm progress bar over every task a master runs: ``Master(progress=True)``."""

from __future__ import annotations

from typing import Any

from pymw_core.errors import MasterClosedError


class ProgressBar:
    """Counts tasks as they are submitted and as they end (failures shown beside).

    Tasks the master abandoned when it closed (a ``with`` block left early) did not
    fail: they are shown as ``abandoned``, not counted as done.
    """

    def __init__(self, **tqdm_options: Any) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ImportError(
                "progress=True needs tqdm: pip install 'pymw-core[progress]'"
            ) from None
        options = {"total": 0, "unit": "task", "desc": "pymw", "dynamic_ncols": True}
        options.update(tqdm_options)
        self.bar = tqdm(**options)
        self.failed = 0
        self.abandoned = 0

    def on_task_submitted(self, task: Any) -> None:
        self.bar.total += 1

    def on_task_done(self, task: Any) -> None:
        self.bar.update(1)

    def on_task_failed(self, task: Any, error: BaseException) -> None:
        if isinstance(error, MasterClosedError):
            self.abandoned += 1
            self.bar.set_postfix(self._counts(), refresh=False)
            return
        self.failed += 1
        self.bar.set_postfix(self._counts(), refresh=False)
        self.bar.update(1)

    def _counts(self) -> dict[str, int]:
        counts = {"failed": self.failed}
        if self.abandoned:
            counts["abandoned"] = self.abandoned
        return counts

    def on_master_closed(self, master: Any) -> None:
        self.bar.close()
