"""The condor interface's own error: a job HTCondor put on hold."""

from __future__ import annotations

from pymw_core.errors import TaskError


class JobHeldError(TaskError):
    """HTCondor held the task's job; PyMW removed it. Holds are final: the task is not retried.

    ``job`` is ``"cluster.proc"``; ``reason``, ``code`` and ``subcode`` are HTCondor's
    ``HoldReason``, ``HoldReasonCode`` and ``HoldReasonSubCode``.
    """

    def __init__(self, message: str, *, job: str = "", reason: str = "", code: int = 0,
                 subcode: int = 0) -> None:
        super().__init__(message)
        self.job = job
        self.reason = reason
        self.code = code
        self.subcode = subcode

    def __reduce__(self):
        return _rebuild, (str(self), self.job, self.reason, self.code, self.subcode)


def _rebuild(message: str, job: str, reason: str, code: int, subcode: int) -> JobHeldError:
    return JobHeldError(message, job=job, reason=reason, code=code, subcode=subcode)
