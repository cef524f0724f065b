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
import threading
import time
from typing import Any

import htcondor2

from pymw_condor import description
from pymw_condor.errors import JobHeldError
from pymw_condor.events import EventFollower
from pymw_condor.schedd import connect, remove
from pymw_condor.submitter import Batcher
from pymw_core import batch
from pymw_core.errors import InterfaceError, TaskError
from pymw_core.resources import key as resources_key
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
# An eviction event also starts a removal (evicted, then aborted) and a hold of a running
# job (evicted, then held); only when neither follows is it a real eviction.
_EVICTION_GRACE = 2.0
_HELD_STATUS = 5  # JobStatus of a held job


def _ran_on(job: _Job) -> None:
    """Task errors name the execute node and the job (see Attempt.ran_on)."""
    ran_on = getattr(job.task, "ran_on", None)
    if callable(ran_on):
        ran_on(host=_node_name(job.host) or None, worker=f"HTCondor job {job.id}")


def _node_name(sinful: str) -> str:
    """``node1`` from an ExecuteHost address ``<10.0.0.5:9618?addrs=...&alias=node1>``
    (its alias when it has one, else its IP address)."""
    inner = sinful.strip().strip("<>")
    address, _, params = inner.partition("?")
    for param in params.split("&"):
        if param.startswith("alias="):
            return param[len("alias="):]
    return address.rsplit(":", 1)[0] if ":" in address else address


class _Job:
    """One HTCondor job of one task attempt, and what PyMW knows of it."""

    __slots__ = ("evicted_at", "files", "host", "key", "ours", "resources", "state", "task")

    def __init__(self, task: Any, files: str, resources: dict[str, int]) -> None:
        self.task = task
        self.files = files  # ",path" for each data file: the pymw_data item
        self.resources = resources  # normalised: jobs with other resources go in another submit
        self.key: tuple[int, int] | None = None  # (cluster, proc) once submitted
        self.state = UNSUBMITTED
        self.ours = False  # PyMW is removing it: its later events change nothing
        self.host = ""
        self.evicted_at: float | None = None

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
    after PyMW's; ``transfer_input_files`` is appended to. Tasks go in one submit once
    none has joined for ``batch_window`` seconds or ``batch_max`` are waiting.
    ``connect_timeout``: seconds to wait for the schedd at start. ``poll_interval``:
    seconds between reads of the job event log when nothing happens.
    """

    # The pool schedules, not the master: let a whole submit_task loop become one
    # cluster and keep a large pool's queue full (Master(max_in_flight=...) overrides).
    default_max_in_flight = 100_000

    blocking_execute = False  # execute_task only queues: the master may call it inline
    eviction_grace = _EVICTION_GRACE  # seconds an eviction waits for a removal or hold

    def __init__(
        self,
        python: str | None = None,
        work_dir: str | os.PathLike | None = None,
        submit: dict[str, Any] | None = None,
        batch_window: float = 0.1,
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
        # One call to the schedd at a time: the bindings make no promise about threads.
        self._schedd_lock = threading.Lock()

        # Root's jobs run as another user: the run directory is opened up.
        self.run = batch.RunDir(work_dir, "pymw-condor", shared=os.geteuid() == 0)
        self.run_id, self.run_dir = self.run.run_id, self.run.path
        # The master snapshots data files here, where the schedd's shadow can read them.
        self.staging_dir = self.run_dir
        try:
            self._prepare_run_dir()
            self._base = description.build(
                python, self.run_dir, self._runtime_name, self.log_path, self.run_id, extra,
            )
            self._descriptions: dict[tuple, htcondor2.Submit] = {
                (): htcondor2.Submit(self._base)}
        except Exception as exc:
            self.run.remove()
            if isinstance(exc, InterfaceError):
                raise
            raise InterfaceError(f"cannot prepare the HTCondor run: {exc}") from exc

        self._master: Any = None
        self._lock = threading.Condition()
        self._jobs: dict[tuple[int, int], _Job] = {}
        self._early: dict[tuple[int, int], list[Any]] = {}
        self._live: dict[int, _Job] = {}  # attempt id -> its job, until the attempt ends
        self._recent = batch.RecentJobs()  # the job that ran each recent task
        self._states = dict.fromkeys(_LIVE_STATES, 0)
        self._totals = dict.fromkeys(_TOTALS, 0)
        self._clusters = 0
        self._closed = False
        self._evicted: dict[tuple[int, int], _Job] = {}
        # Jobs of a dead master's run that this master follows: (cluster, proc) ->
        # (attempt, reply path); old runs (id, directory) removed at close.
        self._adopted: dict[tuple[int, int], tuple[Any, str]] = {}
        self._old_runs: set[tuple[str, str]] = set()
        self._adopted_look = 0.0
        self._follower = EventFollower(self.log_path, self._on_event, poll_interval,
                                       tick=self._check_evictions)
        self._batcher = Batcher(self._submit_batch, batch_window, batch_max,
                                failed=lambda jobs, exc: self._submit_failed(jobs, exc, False))

    def __repr__(self) -> str:
        return f"<CondorInterface run={self.run_id} schedd={self.schedd_name!r}>"

    def _prepare_run_dir(self) -> None:
        self._runtime_name = self.run.install_runtime()
        self._empty = self.run.write("empty", b"")
        # The log must exist before the reader opens it, and the job owner must write it.
        # Unguessable like the tasks' files (see description.stem): only the jobs find it.
        self.log_path = self.run.write(f"jobs-{self.run.secret}.log", b"", 0o666)

    def _description(self, resources: dict[str, int]) -> htcondor2.Submit:
        """The submit description for jobs with ``resources`` (made once per set)."""
        key = resources_key(resources)
        found = self._descriptions.get(key)
        if found is None:
            found = self._descriptions[key] = htcondor2.Submit(
                description.with_resources(self._base, resources))
        return found

    # -- hooks ------------------------------------------------------------------------------

    def attach_master(self, master: Any) -> None:
        self._master = master

    def reattach_task(self, task: Any, handle: dict) -> bool:
        """Collect a task whose job a dead master of this journal submitted.

        The job is still in the queue (idle or running): followed until it leaves it,
        then its reply is delivered (or the task is lost, retried as usual). It left
        already with a reply: delivered now. Gone without one, or held: False, and the
        task is submitted anew (a held job is removed first: nothing runs twice).
        """
        try:
            run_dir, run_id = str(handle["run_dir"]), str(handle["run_id"])
            names = description.task_files(int(handle["attempt"]), str(handle["secret"]))
            cluster, proc = (int(x) for x in handle["job"])
        except (KeyError, TypeError, ValueError):
            return False
        if self._closed or not os.path.isdir(run_dir):
            return False
        with self._lock:
            self._old_runs.add((run_id, run_dir))
        try:
            with self._schedd_lock:
                found = self._schedd.query(
                    constraint=f"ClusterId == {cluster} && ProcId == {proc}",
                    projection=["JobStatus"])
        except Exception as exc:
            log.warning("cannot ask the schedd about job %d.%d of a dead master: %s",
                        cluster, proc, exc)
            return False
        reply_path = os.path.join(run_dir, names.reply)
        if not found:
            reply = batch.read_reply(reply_path)
            if reply is None:
                return False
            deliver(task, reply)
            return True
        if int(found[0].get("JobStatus", 0)) == _HELD_STATUS:
            self._remove_old(f"{cluster}.{proc}", "PyMW: held in a dead master's run; "
                             "submitted again")
            return False
        with self._lock:
            self._adopted[(cluster, proc)] = (task, reply_path)
            self._recent.record(task, f"{cluster}.{proc}")
        task.ran_on(worker=f"HTCondor job {cluster}.{proc}")
        return True

    def execute_task(self, task: Any, worker: Any) -> None:
        """Write the task's request and queue its job for the next submit; return at once."""
        names = description.task_files(task.id, self.run.secret)
        resources = batch.task_resources(task)
        files = []
        for name, path in task.payload.data_files:
            if name.startswith(description.FILE_PREFIX) or name == self._runtime_name:
                raise TaskError(f"data file {path!r} has a name PyMW's condor interface uses "
                                f"for its own files ({description.FILE_PREFIX}*); rename it")
            if any(c in path for c in ",\n\x1f"):
                raise TaskError(f"data file {path!r}: HTCondor cannot transfer a path "
                                "containing a comma or a newline")
            files.append(path)
        self.run.write(names.request, batch.request_bytes(task, file_map=lambda name, path: name))
        placeholder = os.path.join(self.run_dir, names.placeholder)
        try:  # travels in empty, so a job whose Python died still brings a file back
            os.link(self._empty, placeholder)  # a link costs far less than a new file
        except FileExistsError:
            pass
        except OSError:
            with open(placeholder, "wb"):
                pass
        job = _Job(task, "".join("," + path for path in files), resources)
        with self._lock:
            self._states[UNSUBMITTED] += 1
            self._live[task.id] = job
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
        never_left = self._batcher.stop(_SUBMIT_WAIT)
        with self._lock:
            for job in never_left:
                self._set_state(job, None)
            for job in self._jobs.values():
                job.ours = True
            submitted = self._clusters
        if submitted:
            try:
                with self._schedd_lock:
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
        self._forget_old_runs()
        self.run.remove(keep=not self._delete_files())
        if not self._delete_files():
            log.info("PyMW kept the HTCondor run's files in %s", self.run_dir)

    def stop_task(self, task: Any, worker: Any) -> None:
        """The task was cancelled or ran past its timeout: remove its job (or never submit it)."""
        with self._lock:
            job = self._live.get(task.id)
            if job is None or job.task is not task or job.ours:
                return
            job.ours = True
            submitted = job.key is not None and job.key in self._jobs
            if submitted:
                self._set_state(job, REMOVING)
        if submitted:
            self._remove_quietly(job, "PyMW: the task was cancelled or ran past its timeout")
            self._tidy(task.id)
        elif self._batcher.discard(job):
            with self._lock:
                self._set_state(job, None)
            self._tidy(task.id)
        # else it is being submitted right now: _submit_batch removes it once it has an id

    # -- beyond the hooks ---------------------------------------------------------------------

    def job_id(self, task: Any) -> str | None:
        """``"cluster.proc"`` of the latest job of ``task``, or None before it was submitted."""
        with self._lock:
            job = self._live.get(getattr(getattr(task, "attempt", None), "id", task.id))
            if job is not None and job.key is not None:
                return f"{job.key[0]}.{job.key[1]}"
            return self._recent.get(task)

    # -- submitting ---------------------------------------------------------------------------

    def _submit_batch(self, jobs: list[_Job], retry: bool = True) -> None:
        """On the submitter thread: one submit per set of resources in the batch."""
        groups: dict[tuple, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(resources_key(job.resources), []).append(job)
        for group in groups.values():
            self._submit_group(group, retry)

    def _submit_group(self, jobs: list[_Job], retry: bool = True) -> None:
        """One submit, one cluster, one proc per job, in order."""
        secret = self.run.secret
        items = iter([{"pymw_task": str(job.task.id),
                       "pymw_stem": description.stem(job.task.id, secret),
                       "pymw_data": job.files} for job in jobs])
        try:
            with self._schedd_lock:
                result = self._schedd.submit(self._description(jobs[0].resources),
                                             itemdata=items)
        except Exception as exc:
            self._submit_failed(jobs, exc, retry)
            return
        cluster, first = result.cluster(), result.first_proc()
        keys, stopped = [], []
        with self._lock:
            self._clusters += 1
            for index, job in enumerate(jobs):
                job.key = key = (cluster, first + index)
                job.files = ""  # no longer needed
                self._jobs[key] = job
                self._set_state(job, REMOVING if job.ours else IDLE)
                if job.ours:  # stopped while it was being submitted
                    stopped.append(job)
                if key in self._early:
                    keys.append(key)
        for job in jobs:  # with a journal: what a later master needs to collect it
            if not job.ours and job.key is not None:
                job.task.record_handle({
                    "run_dir": self.run_dir, "run_id": self.run_id, "secret": self.run.secret,
                    "attempt": job.task.id, "job": list(job.key)})
        if keys:  # their events came before submit() returned
            self._follower.call_soon(lambda: self._flush_early(keys))
        for job in stopped:
            self._remove_quietly(job, "PyMW: the task was cancelled or ran past its timeout")
            self._tidy(job.task.id)

    def _submit_failed(self, jobs: list[_Job], exc: BaseException, retry: bool) -> None:
        try:
            schedd = connect(self.connect_timeout)[0]
            with self._schedd_lock:
                self._schedd = schedd
        except InterfaceError as gone:
            error: InterfaceError = gone
            reachable = False
        else:
            reachable = True
            if retry:  # the schedd answers: one more try, in case it was restarting
                log.info("submit failed (%s); retrying once", exc)
                self._submit_group(jobs, retry=False)
                return
            error = InterfaceError(f"HTCondor refused to submit {len(jobs)} jobs: "
                                   f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        with self._lock:
            for job in jobs:
                self._set_state(job, None)
        for job in jobs:
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
                self._evicted.pop(job.key, None)  # type: ignore[arg-type]
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
                _ran_on(job)
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
            elif kind == ET.JOB_EVICTED:
                # Back to idle in HTCondor's queue; decided in _check_evictions unless a
                # removal or a hold follows.
                self._set_state(job, IDLE)
                if job.evicted_at is None:
                    job.evicted_at = time.monotonic()
                    self._evicted[job.key] = job  # type: ignore[index]
                return
            elif kind == ET.JOB_HELD:
                job.ours = True
                self._evicted.pop(job.key, None)  # type: ignore[arg-type]
                self._set_state(job, HELD)
            else:
                return
        if kind == ET.JOB_TERMINATED:
            self._terminated(job, event)
        elif kind == ET.JOB_ABORTED:
            self._tidy(job.task.id)
            reason = event.get("Reason", "no reason given")
            job.task.worker_lost(f"HTCondor job {job.id} was removed by someone other than "
                                 f"PyMW: {reason}")
        else:
            self._held(job, event)

    def _check_evictions(self) -> None:
        """On the follower thread: evictions with no removal or hold after them are lost
        attempts. PyMW removes the job and the master's retry rule decides."""
        if self._adopted:
            self._check_adopted()
        if not self._evicted:
            return
        now = time.monotonic()
        due = []
        with self._lock:
            for key, job in list(self._evicted.items()):
                if now - (job.evicted_at or now) >= self.eviction_grace:
                    del self._evicted[key]
                    if not job.ours and key in self._jobs:
                        job.ours = True
                        self._set_state(job, REMOVING)
                        self._totals["evicted"] += 1
                        due.append(job)
        for job in due:
            self._remove_quietly(job, "PyMW: evicted; PyMW submits the task again")
            self._tidy(job.task.id)
            where = f" from {job.host}" if job.host else ""
            job.task.worker_lost(f"HTCondor job {job.id} was evicted{where}")

    def _terminated(self, job: _Job, event: Any) -> None:
        _ran_on(job)
        names = description.task_files(job.task.id, self.run.secret)
        reply = batch.read_reply(os.path.join(self.run_dir, names.reply))
        if reply is not None:
            self._tidy(job.task.id)
            deliver(job.task, reply)
            return
        if event.get("TerminatedNormally", True):
            how = f"exited with status {event.get('ReturnValue', '?')}"
        else:
            how = f"was killed by signal {event.get('TerminatedBySignal', '?')}"
        tail = batch.tail(os.path.join(self.run_dir, names.stderr), _STDERR_TAIL)
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
            with self._schedd_lock:
                remove(self._schedd, job.id, reason)
        except Exception as exc:  # close() removes the whole run again
            log.warning("could not remove HTCondor job %s: %s", job.id, exc)

    # -- files ------------------------------------------------------------------------------------

    # -- jobs of a dead master ------------------------------------------------------------------

    def _check_adopted(self) -> None:
        """On the follower thread, about once a second: adopted jobs that left the queue
        deliver their reply (or are lost); a held one is removed and lost."""
        now = time.monotonic()
        if now < self._adopted_look:
            return
        self._adopted_look = now + 1.0
        with self._lock:
            keys = list(self._adopted)
        runs = " || ".join(f'{description.RUN_ATTRIBUTE} == "{run}"'
                           for run, _ in sorted(self._old_runs))
        try:
            with self._schedd_lock:
                ads = self._schedd.query(constraint=runs or "false",
                                         projection=["ClusterId", "ProcId", "JobStatus"])
        except Exception as exc:
            log.warning("cannot ask the schedd about a dead master's jobs: %s", exc)
            return
        queued = {(int(ad["ClusterId"]), int(ad["ProcId"])): int(ad.get("JobStatus", 0))
                  for ad in ads}
        for key in keys:
            status = queued.get(key)
            if status is not None and status != _HELD_STATUS:
                continue
            with self._lock:
                found = self._adopted.pop(key, None)
            if found is None:
                continue
            task, reply_path = found
            job = f"{key[0]}.{key[1]}"
            if status == _HELD_STATUS:
                self._remove_old(job, "PyMW: held in a dead master's run")
                task.worker_lost(f"HTCondor job {job} of a dead master's run was held")
                continue
            reply = batch.read_reply(reply_path)
            if reply is None:
                task.worker_lost(f"HTCondor job {job} of a dead master's run ended "
                                 "without a result")
            else:
                deliver(task, reply)

    def _remove_old(self, spec: str, reason: str) -> None:
        try:
            with self._schedd_lock:
                remove(self._schedd, spec, reason)
        except Exception as exc:
            log.warning("could not remove HTCondor job(s) %s: %s", spec, exc)

    def _forget_old_runs(self) -> None:
        """At close: the dead masters' runs this master looked at lose their jobs still
        queued, and their files (unless the master keeps files)."""
        with self._lock:
            runs = sorted(self._old_runs)
            self._old_runs.clear()
            self._adopted.clear()
        for run_id, run_dir in runs:
            self._remove_old(f'{description.RUN_ATTRIBUTE} == "{run_id}"',
                             "PyMW: the master that adopted this run closed")
            if self._delete_files():
                shutil.rmtree(run_dir, ignore_errors=True)

    def _delete_files(self) -> bool:
        return not batch.keep_files(self._master)

    def _tidy(self, task_id: int) -> None:
        """The task's attempt is over: its files go (unless the master keeps files)."""
        with self._lock:
            job = self._live.pop(task_id, None)
            if job is not None and job.key is not None:
                self._recent.record(job.task, f"{job.key[0]}.{job.key[1]}")
        if self._delete_files():
            self.run.unlink(*description.task_files(task_id, self.run.secret))
