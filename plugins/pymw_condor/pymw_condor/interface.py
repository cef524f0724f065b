"""The ``condor`` interface: each task is a job of the HTCondor pool the configuration names.

The pool does the scheduling; PyMW packs, batches, watches and unpacks:

* ``execute_task`` writes the task's request file and queues its job (it returns at once);
  a submitter thread sends queued jobs as one cluster per ``Schedd.submit`` (itemdata).
* A job runs the worker runtime zip on the request, brought in by file transfer with the
  task's data files; only the reply file comes back.
* One thread follows the run's job event log: a terminated job delivers its reply, a job
  that ended without one, was removed by someone else or was evicted goes to the master's
  retry rule, a held job is removed and fails its task with the hold reason.
* ``cleanup`` removes every job of the run still queued (one constraint on the ``PyMWRun``
  attribute) and the run's files.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import htcondor2

from pymw_condor import description
from pymw_condor.errors import JobHeldError
from pymw_condor.events import EventFollower
from pymw_condor.schedd import connect, remove
from pymw_condor.submitter import Batcher
from pymw_core import bundle, wire
from pymw_core.errors import InterfaceError, TaskError
from pymw_core.payload import request_file
from pymw_core.unpack import deliver

log = logging.getLogger("pymw.condor")

ET = htcondor2.JobEventType
UNSUBMITTED, IDLE, RUNNING, SUSPENDED, HELD, REMOVING = (
    "unsubmitted", "idle", "running", "suspended", "held", "removing"
)
_LIVE_STATES = (UNSUBMITTED, IDLE, RUNNING, SUSPENDED, HELD, REMOVING)
_TOTALS = ("completed", "removed", "evicted", "without_result")
_STDERR_TAIL = 2000  # bytes of a job's own stderr quoted when it ends without a result
_REMOVE_WAIT = 10.0  # seconds close() waits for removed jobs to leave the queue
_SUBMIT_WAIT = 60.0  # seconds close() waits for a submit in progress


class _Job:
    """One HTCondor job of one task attempt, and what PyMW knows of it."""

    __slots__ = ("task", "files", "key", "state", "ours", "host")

    def __init__(self, task: Any, files: str) -> None:
        self.task = task
        self.files = files  # transfer_input_files of this job
        self.key: tuple[int, int] | None = None  # (cluster, proc) once submitted
        self.state = UNSUBMITTED
        self.ours = False  # PyMW is removing it: its later events change nothing
        self.host = ""

    @property
    def id(self) -> str:
        return f"{self.key[0]}.{self.key[1]}" if self.key else "(unsubmitted)"


def _positive(name: str, value: Any, whole: bool = False) -> Any:
    kinds = (int,) if whole else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or value <= 0:
        raise InterfaceError(f"{name} must be a positive {'whole ' if whole else ''}number, "
                             f"not {value!r}")
    return value


class CondorInterface:
    """Runs tasks as jobs of the HTCondor pool that ``CONDOR_CONFIG`` names.

    ``python``: the interpreter on the execute nodes, an absolute path or a name looked up
    on their PATH (default: this Python's path; the minor version must match).
    ``work_dir``: where request, reply and log files go (default: a private temporary
    directory); the execute side never needs to see it. ``submit``: extra
    submit-description commands (``requirements``, ``request_memory``, ...), applied
    after PyMW's; ``transfer_input_files`` is appended to. ``batch_window`` seconds after
    a task arrives, the tasks waiting go in one submit (at most ``batch_max``).
    ``connect_timeout``: seconds to wait for the schedd at start.
    """

    def __init__(
        self,
        python: str | None = None,
        work_dir: str | os.PathLike | None = None,
        submit: dict[str, Any] | None = None,
        batch_window: float = 0.05,
        batch_max: int = 1000,
        connect_timeout: float = 20.0,
        poll_interval: float = 0.05,
    ) -> None:
        python = sys.executable if python is None else python
        description.check_python(python)
        extra = description.check_submit(submit)
        _positive("batch_window", batch_window)
        _positive("batch_max", batch_max, whole=True)
        _positive("connect_timeout", connect_timeout)
        _positive("poll_interval", poll_interval)
        self.python = python
        self.connect_timeout = connect_timeout
        self._schedd, self.schedd_name = connect(connect_timeout)

        self.run_id = uuid.uuid4().hex[:12]
        self._shared_owner = os.geteuid() == 0  # root's jobs run as another user: open up
        if work_dir is None:
            self.run_dir = tempfile.mkdtemp(prefix=f"pymw-condor-{self.run_id}-")
        else:
            base = os.path.abspath(os.fspath(work_dir))
            try:
                os.makedirs(base, exist_ok=True)
                self.run_dir = tempfile.mkdtemp(prefix=f"pymw-run-{self.run_id}-", dir=base)
            except OSError as exc:
                raise InterfaceError(f"cannot use work_dir {base!r}: {exc}") from exc
        try:
            self._prepare_run_dir()
            self._description = htcondor2.Submit(description.build(
                python, self.run_dir, self._runtime_name, self.log_path, self.run_id, extra,
            ))
        except Exception as exc:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            if isinstance(exc, InterfaceError):
                raise
            raise InterfaceError(f"cannot prepare the HTCondor run: {exc}") from exc

        self._master: Any = None
        self._lock = threading.Condition()
        self._jobs: dict[tuple[int, int], _Job] = {}
        self._early: dict[tuple[int, int], list[Any]] = {}
        self._job_ids: dict[int, tuple[int, int]] = {}
        self._states = dict.fromkeys(_LIVE_STATES, 0)
        self._totals = dict.fromkeys(_TOTALS, 0)
        self._clusters = 0
        self._closed = False
        self._follower = EventFollower(self.log_path, self._on_event, poll_interval)
        self._batcher = Batcher(self._submit_batch, batch_window, batch_max)

    def __repr__(self) -> str:
        return f"<CondorInterface run={self.run_id} schedd={self.schedd_name!r}>"

    def _prepare_run_dir(self) -> None:
        if self._shared_owner:
            os.chmod(self.run_dir, 0o777)  # the shadow writes replies and the log here
        self._runtime_name, data = bundle.runtime_zip()
        with open(os.path.join(self.run_dir, self._runtime_name), "wb") as fh:
            fh.write(data)
        self.log_path = os.path.join(self.run_dir, "jobs.log")
        with open(self.log_path, "w"):
            pass  # must exist before the reader opens it, and be writable by the job owner
        self._open_up(self.log_path)

    def _open_up(self, path: str) -> None:
        if self._shared_owner:
            os.chmod(path, 0o666)

    # -- hooks ------------------------------------------------------------------------------

    def attach_master(self, master: Any) -> None:
        self._master = master

    def execute_task(self, task: Any, worker: Any) -> None:
        """Write the task's request and queue its job for the next submit; return at once."""
        request_name, reply_name, _, _ = description.task_files(task.id)
        files = [self._runtime_name, request_name, reply_name]
        for name, path in task.payload.data_files:
            if name.startswith(description.FILE_PREFIX) or name == self._runtime_name:
                raise TaskError(f"data file {path!r} has a name PyMW's condor interface uses "
                                f"for its own files ({description.FILE_PREFIX}*); rename it")
            if any(c in path for c in ",\n\x1f"):
                raise TaskError(f"data file {path!r}: HTCondor cannot transfer a path "
                                "containing a comma or a newline")
            files.append(path)
        data = request_file(task.payload, task.id, file_map=lambda name, path: name)
        with open(os.path.join(self.run_dir, request_name), "wb") as fh:
            fh.write(data)
        reply = os.path.join(self.run_dir, reply_name)
        with open(reply, "wb"):
            pass  # travels in empty, so a job whose Python died still brings a file back
        self._open_up(reply)
        job = _Job(task, ",".join(files))
        with self._lock:
            self._states[UNSUBMITTED] += 1
        try:
            self._batcher.add(job)
        except InterfaceError:
            with self._lock:
                self._states[UNSUBMITTED] -= 1
            raise

    def get_status(self) -> dict[str, Any]:
        """Per-state job counts from the event log (no query to the schedd), and the run."""
        with self._lock:
            jobs = {**self._states, **self._totals}
            return {
                "run": self.run_id,
                "schedd": self.schedd_name,
                "work_dir": self.run_dir,
                "clusters": self._clusters,
                "jobs": jobs,
            }

    def cleanup(self) -> None:
        """Remove the run's jobs still in the queue, stop the threads, remove the run's files."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._batcher.stop(_SUBMIT_WAIT)
        with self._lock:
            for job in self._jobs.values():
                job.ours = True
            submitted = self._clusters
        if submitted:
            try:
                remove(self._schedd, f'{description.RUN_ATTRIBUTE} == "{self.run_id}"',
                       "PyMW: the master closed")
            except Exception as exc:
                log.warning("could not remove the HTCondor jobs of run %s (constraint "
                            '%s == "%s"): %s', self.run_id, description.RUN_ATTRIBUTE,
                            self.run_id, exc)
            deadline = time.monotonic() + _REMOVE_WAIT
            with self._lock:
                while self._jobs and (left := deadline - time.monotonic()) > 0:
                    self._lock.wait(left)
        self._follower.stop()
        if self._delete_files():
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            log.info("PyMW kept the HTCondor run's files in %s", self.run_dir)

    # -- beyond the hooks ---------------------------------------------------------------------

    def job_id(self, task: Any) -> str | None:
        """``"cluster.proc"`` of the latest job of ``task``, or None before it was submitted."""
        with self._lock:
            key = self._job_ids.get(task.id)
        return f"{key[0]}.{key[1]}" if key else None

    # -- submitting ---------------------------------------------------------------------------

    def _submit_batch(self, batch: list[_Job], retry: bool = True) -> None:
        """On the submitter thread: one submit, one cluster, one proc per job, in order."""
        items = iter([{"pymw_task": str(job.task.id), "pymw_files": job.files} for job in batch])
        try:
            result = self._schedd.submit(self._description, itemdata=items)
        except Exception as exc:
            self._submit_failed(batch, exc, retry)
            return
        cluster, first = result.cluster(), result.first_proc()
        keys = []
        with self._lock:
            self._clusters += 1
            for index, job in enumerate(batch):
                job.key = key = (cluster, first + index)
                self._set_state(job, IDLE)
                self._jobs[key] = job
                self._job_ids[job.task.id] = key
                if key in self._early:
                    keys.append(key)
        if keys:  # their events came before submit() returned
            self._follower.call_soon(lambda: self._flush_early(keys))

    def _submit_failed(self, batch: list[_Job], exc: BaseException, retry: bool) -> None:
        try:
            self._schedd = connect(self.connect_timeout)[0]
        except InterfaceError as gone:
            error: InterfaceError = gone
            reachable = False
        else:
            reachable = True
            if retry:  # the schedd answers: one more try, in case it was restarting
                log.info("submit failed (%s); retrying once", exc)
                self._submit_batch(batch, retry=False)
                return
            error = InterfaceError(f"HTCondor refused to submit {len(batch)} jobs: "
                                   f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        with self._lock:
            for job in batch:
                self._set_state(job, None)
        for job in batch:
            self._tidy(job.task.id)
            job.task.task_finished(error)
        if not reachable and self._master is not None:
            self._master.workers_exhausted(str(error))

    # -- following the event log ----------------------------------------------------------------

    def _set_state(self, job: _Job, state: str | None) -> None:
        """Lock held. ``None``: the job left the queue."""
        self._states[job.state] -= 1
        if state is not None:
            self._states[state] += 1
            job.state = state

    def _flush_early(self, keys: list[tuple[int, int]]) -> None:
        for key in keys:
            with self._lock:
                job = self._jobs.get(key)
                backlog = self._early.pop(key, [])
            if job is not None:
                for event in backlog:
                    self._apply(job, event)

    def _on_event(self, event: Any) -> None:
        """On the follower thread: one event of the run's log."""
        key = (event.cluster, event.proc)
        with self._lock:
            job = self._jobs.get(key)
            if job is None:  # submit() has not returned yet: keep it for when it does
                if not self._closed:
                    self._early.setdefault(key, []).append(event)
                return
            backlog = self._early.pop(key, None)
        for earlier in backlog or ():
            self._apply(job, earlier)
        self._apply(job, event)

    def _apply(self, job: _Job, event: Any) -> None:
        kind = event.type
        with self._lock:
            if job.key not in self._jobs:
                return  # already left the queue
            if kind in (ET.JOB_TERMINATED, ET.JOB_ABORTED):
                del self._jobs[job.key]
                self._set_state(job, None)
                self._lock.notify_all()
                if job.ours:
                    return
                self._totals["completed" if kind == ET.JOB_TERMINATED else "removed"] += 1
            elif job.ours:
                return
            elif kind == ET.EXECUTE:
                job.host = str(event.get("ExecuteHost", ""))
                self._set_state(job, RUNNING)
                return
            elif kind in (ET.SHADOW_EXCEPTION, ET.JOB_RELEASED):
                self._set_state(job, IDLE)  # HTCondor runs it again by itself
                return
            elif kind == ET.JOB_SUSPENDED:
                self._set_state(job, SUSPENDED)
                return
            elif kind == ET.JOB_UNSUSPENDED:
                self._set_state(job, RUNNING)
                return
            elif kind in (ET.JOB_HELD, ET.JOB_EVICTED):
                job.ours = True
                self._set_state(job, HELD if kind == ET.JOB_HELD else REMOVING)
                if kind == ET.JOB_EVICTED:
                    self._totals["evicted"] += 1
            else:
                return
        if kind == ET.JOB_TERMINATED:
            self._terminated(job, event)
        elif kind == ET.JOB_ABORTED:
            self._tidy(job.task.id)
            reason = event.get("Reason", "no reason given")
            job.task.worker_lost(f"HTCondor job {job.id} was removed by someone other than "
                                 f"PyMW: {reason}")
        elif kind == ET.JOB_HELD:
            self._held(job, event)
        else:
            self._remove_quietly(job, "PyMW: evicted; PyMW submits the task again")
            self._tidy(job.task.id)
            where = f" from {job.host}" if job.host else ""
            job.task.worker_lost(f"HTCondor job {job.id} was evicted{where}")

    def _terminated(self, job: _Job, event: Any) -> None:
        _, reply_name, _, stderr_name = description.task_files(job.task.id)
        reply = None
        try:
            with open(os.path.join(self.run_dir, reply_name), "rb") as fh:
                reply = wire.read_message(fh)
        except Exception:
            reply = None
        if isinstance(reply, tuple) and len(reply) == 7 and reply[0] == "done":
            self._tidy(job.task.id)
            deliver(job.task, reply)
            return
        if event.get("TerminatedNormally", True):
            how = f"exited with status {event.get('ReturnValue', '?')}"
        else:
            how = f"was killed by signal {event.get('TerminatedBySignal', '?')}"
        tail = _tail(os.path.join(self.run_dir, stderr_name))
        self._tidy(job.task.id)
        with self._lock:
            self._totals["without_result"] += 1
        where = f" on {job.host}" if job.host else ""
        message = f"HTCondor job {job.id}{where} {how} without a result"
        job.task.worker_lost(message + (f"; its stderr ends:\n{tail}" if tail else ""))

    def _held(self, job: _Job, event: Any) -> None:
        reason = str(event.get("HoldReason", "no reason given"))
        code = int(event.get("HoldReasonCode", 0) or 0)
        subcode = int(event.get("HoldReasonSubCode", 0) or 0)
        self._remove_quietly(job, "PyMW: held; the task failed with the hold reason")
        self._tidy(job.task.id)
        job.task.task_finished(JobHeldError(
            f"HTCondor job {job.id} of {job.task} was held: {reason} (code {code}/{subcode}); "
            "PyMW removed it",
            job=job.id, reason=reason, code=code, subcode=subcode,
        ))

    def _remove_quietly(self, job: _Job, reason: str) -> None:
        try:
            remove(self._schedd, job.id, reason)
        except Exception as exc:  # close() removes the whole run again
            log.warning("could not remove HTCondor job %s: %s", job.id, exc)

    # -- files ------------------------------------------------------------------------------------

    def _delete_files(self) -> bool:
        return bool(getattr(self._master, "delete_files", True))

    def _tidy(self, task_id: int) -> None:
        """The task's attempt is over: its files go (unless the master keeps files)."""
        if not self._delete_files():
            return
        for name in description.task_files(task_id):
            try:
                os.unlink(os.path.join(self.run_dir, name))
            except OSError:
                pass


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _STDERR_TAIL))
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""
