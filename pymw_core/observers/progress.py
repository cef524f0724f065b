"""A tqdm progress bar over every task a master runs: ``Master(progress=True)``."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """Counts tasks as they are submitted and as they end (failures shown beside)."""

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

    def on_task_submitted(self, task: Any) -> None:
        self.bar.total += 1

    def on_task_done(self, task: Any) -> None:
        self.bar.update(1)

    def on_task_failed(self, task: Any, error: BaseException) -> None:
        self.failed += 1
        self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(1)

    def on_master_closed(self, master: Any) -> None:
        self.bar.close()
