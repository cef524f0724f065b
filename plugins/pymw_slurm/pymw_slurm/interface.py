"""The ``slurm`` interface: tasks run in Slurm job arrays whose elements claim them.

Describe the job, submit it, ask for its state; the rest is the run directory
(:mod:`pymw_core.batch`) on a filesystem the submit host and the nodes share:

* ``execute_task`` writes the task's request into ``tasks/<group>/`` (one group per
  distinct set of resources) and returns at once.
* One monitor thread looks at the run directory every ``poll_interval`` (claims,
  replies, lost tasks, ended elements) and, when a group has more queued tasks than
  its idle and pending elements can take, submits one array (split at
  ``MaxArraySize``) of elements that each claim and run tasks until none is left
  (:mod:`pymw_slurm.element`). Surplus pending elements are cancelled.
* One ``squeue`` call per poll for all of the run's jobs, with back-off while nothing
  changes: elements that vanish with a claimed task and no reply send it through the
  lost-worker rule with the reason ``scontrol show job`` gives.
* ``cleanup`` cancels every array of the run and removes the run directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pymw_core import batch
from pymw_core.errors import InterfaceError, TaskError
from pymw_core.resources import key as resources_key
from pymw_core.unpack import deliver
from pymw_slurm import commands, options
from pymw_slurm.commands import NEVER_REASONS, Refused, Slurm, Unreachable

log = logging.getLogger("pymw.slurm")

DEFAULT_WORK_DIR = os.path.join("~", ".pymw", "slurm")
_DIRS = ("tasks", "claimed", "replies", "lost", "cancel", "ended", "logs", "data", "hosts")
_LOG_TAIL = 2000  # bytes of an element's own output quoted when a task dies in it
_CLOSE_WAIT = 10.0  # seconds close() waits for cancelled jobs to leave the queue
_SUBMIT_RETRY = 5.0  # seconds between sbatch attempts while the controller is away
# Seconds after the controller answers again during which sbatch's refusals are retried: a
# restarted slurmctld refuses jobs ("Requested node configuration is not available") until
# the nodes' slurmd have registered again (3 s on the test cluster).
_SETTLE = 60.0
_STALL_WARN = 60.0  # seconds tasks wait with every job pending before a warning says why
_STALL_REPEAT = 300.0  # seconds between repeats of that warning while it lasts
_END_WAIT = 10.0  # seconds a signalled job's final state is waited for (after COMPLETING)
_NOT_ENDED = ("JobState=RUNNING", "JobState=COMPLETING", "JobState=CONFIGURING")


@dataclass(eq=False)
class _Attempt:
    """One run of one task: its file key and where it is."""

    key: int
    task: Any
    group: _Group
    need: int
    file: str  # tasks/<group>/<key>-<need>.task
    job: str = ""  # the element that claimed it
    over: bool = False  # finished, lost or stopped: later events change nothing


@dataclass(eq=False)
class _Group:
    """Tasks with one set of resources: they share jobs, no other task does."""

    name: str
    resources: dict[str, int]
    sbatch: list[str]
    queued: int = 0  # attempts written and not yet seen claimed or over
    tested: bool = False
    error: BaseException | None = None
    elements: set[str] = field(default_factory=set)  # alive (submitted, not ended)
    arrays: list[str] = field(default_factory=list)


class SlurmInterface:
    """Runs tasks in Slurm job arrays; the elements act as workers on a shared run dir.

    See docs/interfaces/slurm.md for every option; in short: ``work_dir`` (absolute, on
    a filesystem the nodes share), ``python`` (the interpreter on the nodes),
    ``partition``, ``account``, ``time`` (a job's walltime), ``max_jobs`` (elements
    alive at once), ``sbatch`` (any other sbatch options), ``idle_timeout``,
    ``walltime_margin``, ``poll_interval``, ``squeue_interval``,
    ``squeue_max_interval``, ``connect_timeout``, ``controller_timeout``.
    """

    default_max_in_flight = 100_000  # Slurm schedules; the master hands everything over
    blocking_execute = False  # execute_task only writes a file

    def __init__(
        self,
        work_dir: str | os.PathLike | None = None,
        python: str | None = None,
        partition: str | None = None,
        account: str | None = None,
        time: str | int | None = None,
        max_jobs: int = 100,
        sbatch: dict[str, Any] | list[str] | None = None,
        idle_timeout: float = 15.0,
        walltime_margin: float = 60.0,
        poll_interval: float = 0.05,
        squeue_interval: float = 1.0,
        squeue_max_interval: float = 30.0,
        connect_timeout: float = 20.0,
        controller_timeout: float = 300.0,
    ) -> None:
        self.python = options.check_python(sys.executable if python is None else python)
        self.partition = options.check_name("partition", partition)
        self.account = options.check_name("account", account)
        self.time_text, self.time_limit = options.check_time(time)
        self.max_jobs = options.positive("max_jobs", max_jobs, whole=True)
        extra = options.check_sbatch(sbatch)
        for name in ("idle_timeout", "walltime_margin", "poll_interval", "squeue_interval",
                     "squeue_max_interval", "connect_timeout", "controller_timeout"):
            options.positive(name, locals()[name])
        if squeue_max_interval < squeue_interval:
            raise InterfaceError("squeue_max_interval must be at least squeue_interval")
        self.walltime_margin = walltime_margin
        self.idle_timeout = idle_timeout
        self.poll_interval = poll_interval
        self.controller_timeout = controller_timeout
        if self.time_limit is not None and walltime_margin >= self.time_limit:
            raise InterfaceError(f"walltime_margin ({walltime_margin:g} s) must be shorter than "
                                 f"a job's time ({self.time_text}: {self.time_limit:g} s)")
        given = DEFAULT_WORK_DIR if work_dir is None else work_dir
        if isinstance(given, (str, os.PathLike)):
            given = os.path.expanduser(os.fspath(given))

        self.slurm = Slurm(connect_timeout)
        try:  # reachable, within connect_timeout, before any file is written
            self.max_array_size = self.slurm.max_array_size()
        except InterfaceError as exc:
            raise InterfaceError(f"cannot reach the Slurm controller: {exc}; does `squeue` "
                                 "work here?") from exc

        self.run = batch.RunDir(given, "pymw-slurm", absolute=True)
        self.run_id = self.run.run_id
        self.run_dir = self.run.path
        # The master snapshots data files here: on the same file system as the per-task
        # data folders, so placing one is a hard link, never a copy.
        self.staging_dir = self.run_dir
        self.job_name = f"pymw-{self.run_id}"
        try:
            for name in _DIRS:
                self.run.mkdir(name)
            self.runtime = self.run.join(self.run.install_runtime())
            from pymw_slurm import element

            with open(element.__file__, "rb") as fh:
                self.run.write("pymw-element.py", fh.read())
            self.script = self.run.write("pymw-element.sh", (
                "#!/bin/sh\n# One element of a PyMW job array (see pymw-element.py).\n"
                f"exec {shlex.quote(self.python)} "
                f"{shlex.quote(self.run.join('pymw-element.py'))} \"$@\"\n"
            ).encode())
            os.chmod(self.script, 0o755)
        except Exception as exc:
            self.run.remove()
            raise InterfaceError(f"cannot prepare the Slurm run in {self.run_dir}: {exc}") from exc
        self._base = [f"--job-name={self.job_name}", f"--chdir={self.run_dir}",
                      f"--output={self.run.join('logs', '%A_%a.log')}"]
        for flag, value in (("--partition", self.partition), ("--account", self.account),
                            ("--time", self.time_text)):
            if value is not None:
                self._base.append(f"{flag}={value}")
        self._base += extra

        self._master: Any = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._next_key = 0
        self._attempts: dict[int, _Attempt] = {}
        self._recent = batch.RecentJobs()  # the element that ran each recent task
        self._hosts: dict[str, str] = {}  # element (job) -> the node it runs on
        self._groups: dict[tuple, _Group] = {}
        self._states: dict[str, int] = {}  # from the last squeue: element state -> count
        self._pending: dict[str, str] = {}  # pending element -> its reason
        self._stalled: tuple[float, float] | None = None  # (since, next warning): none runs
        self._element_group: dict[str, _Group] = {}
        self._arrays: list[tuple[str, int]] = []  # (array id, elements)
        self._totals = dict.fromkeys(("completed", "lost", "ended"), 0)
        self._backoff = commands.Backoff(squeue_interval, squeue_max_interval)
        self._down_since: float | None = None
        self._back_at: float | None = None  # when the controller last answered again
        self._lost_wait: dict[str, tuple[float, float]] = {}  # lost note -> (first, next look)
        self._retry_submit = 0.0
        self._adopted: dict[str, _Adopted] = {}  # old run dir -> what a dead master left
        self._thread = threading.Thread(target=self._monitor, name="pymw-slurm", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<SlurmInterface run={self.run_id} dir={self.run_dir!r}>"

    # -- hooks --------------------------------------------------------------------------------

    def attach_master(self, master: Any) -> None:
        self._master = master

    def reattach_task(self, task: Any, handle: dict) -> bool:
        """Collect a task a dead master of this journal queued in its run directory.

        Its reply there: delivered now. Claimed by one of the old run's elements (still
        running it): followed until its reply or its element's end. Still queued: its
        request is taken back (renamed away, so no old element claims it) and False
        sends it through this run like any new task; nothing ran it, nothing runs twice.
        """
        try:
            run_dir, job_name = str(handle["run_dir"]), str(handle["job_name"])
            key, file = int(handle["key"]), str(handle["file"])
        except (KeyError, TypeError, ValueError):
            return False
        if self._closed or not os.path.isdir(run_dir):
            return False
        with self._lock:  # removed at close (or once its elements have ended)
            old = self._adopted.get(run_dir)
            if old is None:
                old = self._adopted[run_dir] = _Adopted(run_dir, job_name)
        self._wake.set()
        prefix = f"{key}@"
        for name in _listdir(os.path.join(run_dir, "replies")):
            if name.startswith(prefix) and not name.endswith(".part"):
                reply = batch.read_reply(os.path.join(run_dir, "replies", name))
                if reply is None:
                    return False
                self._old_done(run_dir, key, name)
                deliver(task, reply)
                return True
        try:  # queued and unclaimed: take it back; its element-to-be never sees it
            os.unlink(os.path.join(run_dir, file))
            shutil.rmtree(os.path.join(run_dir, "data", str(key)), ignore_errors=True)
            return False
        except FileNotFoundError:
            pass
        claimed = [n for n in _listdir(os.path.join(run_dir, "claimed")) if n.startswith(prefix)]
        if not claimed:
            return False  # lost with its element, or never written: it runs again here
        job = claimed[0].partition("@")[2]
        with self._lock:
            old.tasks[key] = _Attempt(key, task, _ADOPTED, 0, file, job=job)
            self._recent.record(task, job)
        task.ran_on(worker=f"Slurm job {job}")
        self._wake.set()
        return True

    def execute_task(self, task: Any, worker: Any) -> None:
        """Queue the task's request in its group's directory; return at once."""
        if self._closed:
            raise InterfaceError("the slurm interface is closed")
        resources = batch.task_resources(task)
        need = options.need_seconds(task.timeout, self.walltime_margin)
        if self.time_limit is not None and need >= self.time_limit:
            raise TaskError(
                f"{task.name} needs {need} s of walltime (its timeout) but a job gets "
                f"time={self.time_text} ({self.time_limit:g} s): raise time or lower the timeout")
        with self._lock:
            group = self._group(resources)
            if group.error is not None:
                raise group.error
            key = self._next_key = self._next_key + 1
        name = f"{key}-{need}.task"
        data = self._stage_data(task, key)
        request = batch.request_bytes(task, file_map=lambda n, p: data[n])
        attempt = _Attempt(key, task, group, need, os.path.join("tasks", group.name, name))
        with self._lock:
            self._attempts[key] = attempt
            group.queued += 1
        self.run.write(attempt.file, request, atomic=True)
        # With a journal, what a later master needs to collect this task if we die.
        task.record_handle({"run_dir": self.run_dir, "job_name": self.job_name, "key": key,
                            "file": attempt.file})
        self._wake.set()

    def stop_task(self, task: Any, worker: Any) -> None:
        """Cancel or timeout: take the request back, or have its element kill it."""
        with self._lock:  # a scan, but stops are rare and attempts end in a few lookups
            attempt = next((a for a in self._attempts.values() if a.task is task), None)
            adopted = None if attempt is not None else next(
                ((old, k) for old in self._adopted.values()
                 for k, a in old.tasks.items() if a.task is task), None)
        if adopted is not None:
            old, key = adopted
            with self._lock:
                old.tasks.pop(key, None)
            batch_write(os.path.join(old.run_dir, "cancel", str(key)))
            return
        with self._lock:
            if attempt is None or attempt.over:
                return
            attempt.over = True
        try:
            os.unlink(self.run.join(attempt.file))
            with self._lock:
                attempt.group.queued -= 1
        except FileNotFoundError:  # claimed: its element kills it
            self.run.write(os.path.join("cancel", str(attempt.key)), b"")
        self._tidy(attempt)
        self._wake.set()

    def get_status(self) -> dict[str, Any]:
        """The run's jobs by state (from the last squeue), arrays, controller calls."""
        with self._lock:
            return {
                "run": self.run_id,
                "work_dir": self.run_dir,
                "arrays": len(self._arrays),
                "jobs": dict(self._states),
                "elements": {**self._totals, "alive": len(self._element_group)},
                "tasks_queued": sum(g.queued for g in self._groups.values()),
                "pending": _count(r for r in self._pending.values() if r),  # reason -> jobs
                "controller_calls": self.slurm.calls,
            }

    def cleanup(self) -> None:
        """Cancel the run's arrays, stop the monitor, remove the run's files."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            arrays = [array for array, _ in self._arrays]
        self._wake.set()
        self._thread.join(30)
        with self._lock:
            adopted = list(self._adopted.values())
            self._adopted.clear()
        for old in adopted:
            self._forget_run(old)
        if arrays:
            try:
                self.slurm.cancel(arrays)
                deadline = time.monotonic() + _CLOSE_WAIT
                while self.slurm.queue(self.job_name) and time.monotonic() < deadline:
                    time.sleep(0.2)
            except InterfaceError as exc:
                log.warning("could not cancel the Slurm jobs of run %s (scancel --name=%s): %s",
                            self.run_id, self.job_name, exc)
        keep = batch.keep_files(self._master)
        self.run.remove(keep)
        if keep:
            log.info("PyMW kept the Slurm run's files in %s", self.run_dir)

    # -- beyond the hooks ---------------------------------------------------------------------

    def job_id(self, task: Any) -> str | None:
        """``ARRAY_INDEX`` of the element that claimed the task's latest attempt, or None."""
        with self._lock:
            return self._recent.get(task)

    @property
    def arrays(self) -> list[tuple[str, int]]:
        """``(array job id, elements)`` of each array submitted so far."""
        with self._lock:
            return list(self._arrays)

    # -- queueing -------------------------------------------------------------------------------

    def _group(self, resources: dict[str, int]) -> _Group:
        key = resources_key(resources)
        group = self._groups.get(key)
        if group is None:
            group = _Group(f"g{len(self._groups)}", resources,
                           self._base + options.resource_options(resources))
            self._groups[key] = group
            self.run.mkdir("tasks", group.name)
        return group

    def _stage_data(self, task: Any, key: int) -> dict[str, str]:
        """Data files go into the run directory (which the nodes see): linked, else copied."""
        files = task.payload.data_files
        if not files:
            return {}
        folder = self.run.mkdir("data", str(key))
        placed = {}
        for name, path in files:
            target = os.path.join(folder, name)
            try:
                os.link(path, target)
            except OSError:
                try:
                    shutil.copyfile(path, target)
                except OSError as exc:
                    raise TaskError(f"cannot copy data file {path!r} into the run directory "
                                    f"{self.run_dir}: {exc}") from exc
            placed[name] = target
        return placed

    def _tidy(self, attempt: _Attempt) -> None:
        if batch.keep_files(self._master):
            return
        self.run.unlink(os.path.join("replies", f"{attempt.key}@{attempt.job}"))
        shutil.rmtree(self.run.join("data", str(attempt.key)), ignore_errors=True)

    # -- the monitor thread ---------------------------------------------------------------------

    def _monitor(self) -> None:
        while not self._closed:
            try:
                if self._adopted:
                    self._scan_adopted()
                busy = self._scan()
                if not self._closed:
                    self._plan(busy)
                if not self._closed and self._element_group and \
                        time.monotonic() >= self._backoff.due:
                    self._poll_queue()
            except Exception:
                log.exception("the slurm interface's monitor failed a round; going on")
            with self._lock:
                idle = not self._attempts and not self._element_group and not self._adopted
            self._wake.wait(1.0 if idle else self.poll_interval)
            self._wake.clear()

    def _scan(self) -> dict[str, int]:
        """Claims, replies, lost tasks and ended elements from the run directory.

        Returns the number of busy elements per group.
        """
        busy: dict[str, int] = {}
        for name in _listdir(self.run.join("claimed")):
            key, _, job = name.partition("@")
            attempt = self._attempts.get(int(key)) if key.isdigit() else None
            if attempt is not None and not attempt.job:
                with self._lock:
                    attempt.job = job
                    self._recent.record(attempt.task, job)
                    if not attempt.over:
                        attempt.group.queued -= 1
                self._ran_on(attempt)
            if attempt is not None:
                busy[attempt.group.name] = busy.get(attempt.group.name, 0) + 1
        for name in _listdir(self.run.join("replies")):
            if not name.endswith(".part"):
                self._replied(name)
        for name in _listdir(self.run.join("lost")):
            self._lost(name)
        for name in _listdir(self.run.join("ended")):
            self._ended(name)
        return busy

    def _with_log(self, job: str, text: str) -> str:
        """``text`` and the end of the job's own output (its stderr: a crash's last words;
        a task's own output is captured apart)."""
        tail = batch.tail(self.run.join("logs", f"{job}.log"), _LOG_TAIL) if job else ""
        return f"{text}; its output ends:\n{tail}" if tail else text

    def _ran_on(self, attempt: _Attempt) -> None:
        """Task errors name the element's node and job (see Attempt.ran_on); the node is
        read once per element from ``hosts/JOB``."""
        ran_on = getattr(attempt.task, "ran_on", None)
        if not attempt.job or not callable(ran_on):
            return
        host = self._hosts.get(attempt.job)
        if host is None:
            try:
                with open(self.run.join("hosts", attempt.job)) as fh:
                    host = self._hosts[attempt.job] = fh.read().strip()
            except OSError:
                host = ""
        ran_on(host=host or None, worker=f"Slurm job {attempt.job}")

    def _take(self, name: str) -> _Attempt | None:
        """The attempt a ``KEY@JOB`` file is about, marked over; None if it was already."""
        key, _, job = name.partition("@")
        with self._lock:
            attempt = self._attempts.pop(int(key), None) if key.isdigit() else None
            if attempt is None:
                return None
            if not attempt.job:
                attempt.job = job
                self._recent.record(attempt.task, job)
                if not attempt.over:
                    attempt.group.queued -= 1
            if attempt.over:
                return None
            attempt.over = True
        self._ran_on(attempt)
        return attempt

    def _replied(self, name: str) -> None:
        path = self.run.join("replies", name)
        reply = batch.read_reply(path)
        attempt = self._take(name)
        if attempt is None:
            if not batch.keep_files(self._master):
                self.run.unlink(os.path.join("replies", name))
            return
        self._tidy(attempt)
        with self._lock:
            self._totals["completed"] += 1
        if reply is None:
            attempt.task.worker_lost(f"the reply of {attempt.task.name} from Slurm job "
                                     f"{attempt.job} could not be read")
            return
        deliver(attempt.task, reply)

    def _lost(self, name: str) -> None:
        path = self.run.join("lost", name)
        try:
            with open(path) as fh:
                kind, _, text = fh.read().partition("\n")
        except OSError:
            return
        why = ""
        if kind == "job":  # the whole job was signalled: Slurm knows why once it has ended
            now = time.monotonic()
            first, due = self._lost_wait.get(name, (now, now))
            if now < due:
                return
            why = self.slurm.why_ended(name.partition("@")[2])
            # Not ended yet, or scontrol did not answer (a loaded controller): ask again.
            if (not why or why.startswith(_NOT_ENDED)) and now - first < _END_WAIT:
                self._lost_wait[name] = (first, now + 0.5)
                return
            self._lost_wait.pop(name, None)
            self._backoff.hurry()
        os.unlink(path)
        attempt = self._take(name)
        if attempt is None:
            return
        if why:
            text = f"{text.strip()} ({why})"
        self._tidy(attempt)
        with self._lock:
            self._totals["lost"] += 1
        attempt.task.worker_lost(self._with_log(attempt.job, text.strip()))

    def _ended(self, job: str) -> None:
        path = self.run.join("ended", job)
        try:
            with open(path) as fh:
                why, _, facts = fh.read().partition("\n")
        except OSError:
            return
        if not batch.keep_files(self._master):
            os.unlink(path)
        with self._lock:
            group = self._element_group.pop(job, None)
            if group is None:
                return
            group.elements.discard(job)
            self._pending.pop(job, None)
            self._totals["ended"] += 1
        if why.startswith("too little walltime") and "ran=0 " in facts:
            limit = facts.rpartition("limit=")[2].strip()
            self._fail_unfitting(group, float(limit) if limit else None)

    def _fail_unfitting(self, group: _Group, limit: float | None) -> None:
        """A fresh element had too little walltime for every queued task of its group: the
        tasks that need more than a whole job's walltime can never run."""
        if limit is None:
            return
        doomed = []
        with self._lock:
            for attempt in list(self._attempts.values()):
                if attempt.group is group and not attempt.job and not attempt.over \
                        and attempt.need >= limit:
                    doomed.append(attempt)
        for attempt in doomed:
            try:
                os.unlink(self.run.join(attempt.file))
            except FileNotFoundError:
                continue  # claimed after all
            with self._lock:
                if attempt.over:
                    continue
                attempt.over = True
                group.queued -= 1
                self._attempts.pop(attempt.key, None)
            self._tidy(attempt)
            attempt.task.task_finished(TaskError(
                f"{attempt.task.name} needs {attempt.need} s of walltime but the jobs of this "
                f"partition get {limit:g} s: set time or lower the task's timeout"))

    # -- submitting -------------------------------------------------------------------------------

    def _plan(self, busy: dict[str, int]) -> None:
        """Submit elements for groups whose queued tasks exceed their free elements."""
        with self._lock:
            alive = len(self._element_group)
            plans = []
            for group in self._groups.values():
                if group.error is not None or group.queued <= 0:
                    continue
                free = len(group.elements) - busy.get(group.name, 0)
                want = min(group.queued - free, self.max_jobs - alive)
                if want > 0:
                    plans.append((group, want))
                    alive += want
        if plans and time.monotonic() < self._retry_submit:
            return
        for group, want in plans:
            self._submit(group, want)

    def _submit(self, group: _Group, count: int) -> None:
        args = [self.run_dir, group.name, self.runtime, f"{self.idle_timeout:g}",
                f"{self.time_limit or 0:g}"]
        try:
            if not group.tested:
                self.slurm.test(group.sbatch, self.script, args)
                group.tested = True
            while count > 0:
                size = min(count, self.max_array_size)
                array = self.slurm.submit(
                    [*group.sbatch, f"--array=0-{size - 1}%{self.max_jobs}"], self.script, args)
                with self._lock:
                    self._arrays.append((array, size))
                    group.arrays.append(array)
                    for index in range(size):
                        job = f"{array}_{index}"
                        group.elements.add(job)
                        self._element_group[job] = group
                        self._pending[job] = ""
                count -= size
                self._backoff.hurry()
            self._controller_back()
        except Unreachable as exc:
            self._controller_away(exc)
            self._retry_submit = time.monotonic() + _SUBMIT_RETRY
        except Refused as exc:
            # A refusal is an answer: the controller is back, if it was away (sbatch may
            # hear it before squeue does), and refusals right after that are retried.
            self._controller_back()
            if self._settling():
                log.warning("sbatch refused jobs right after the Slurm controller came back "
                            "(its nodes may not have registered yet); retrying: %s", exc)
                self._retry_submit = time.monotonic() + _SUBMIT_RETRY
                return
            self._fail_group(group, InterfaceError(
                f"Slurm refused the jobs of tasks with resources {group.resources or '{}'} "
                f"({' '.join(group.sbatch[3:]) or 'no extra options'}): {exc}"))

    def _fail_group(self, group: _Group, error: BaseException) -> None:
        """No job of this group will ever run: its queued tasks fail, and later ones at once."""
        with self._lock:
            group.error = error
            doomed = [a for a in self._attempts.values()
                      if a.group is group and not a.over and not a.job]
        for attempt in doomed:
            with self._lock:
                if attempt.over:
                    continue
                attempt.over = True
                group.queued -= 1
                self._attempts.pop(attempt.key, None)
            self.run.unlink(attempt.file)
            self._tidy(attempt)
            attempt.task.task_finished(error)

    # -- asking Slurm ------------------------------------------------------------------------------

    def _poll_queue(self) -> None:
        """One squeue for every element of the run; vanished elements' tasks are lost."""
        try:
            lines = self.slurm.queue(self.job_name)
        except Unreachable as exc:
            self._controller_away(exc)
            self._backoff.asked(False)
            return
        except InterfaceError as exc:
            log.warning("squeue failed: %s", exc)
            self._backoff.asked(False)
            return
        self._controller_back()
        seen = {line.job: line for line in lines}
        # Ended markers written before the job left the queue are visible now.
        for name in _listdir(self.run.join("ended")):
            self._ended(name)
        states: dict[str, int] = {}
        never: dict[str, tuple[_Group, str]] = {}
        with self._lock:
            changed = False
            vanished = []
            for job, group in list(self._element_group.items()):
                line = seen.get(job)
                if line is None:
                    vanished.append((job, group))
                    continue
                states[line.state] = states.get(line.state, 0) + 1
                if line.state == "PENDING":
                    if self._pending.get(job) != line.reason:
                        changed = True
                    self._pending[job] = line.reason
                    if line.reason in NEVER_REASONS:
                        never[group.name] = (group, line.reason)
                elif job in self._pending:
                    del self._pending[job]
                    changed = True
            changed = changed or bool(vanished) or states != self._states
            self._states = states
        for job, group in vanished:
            self._vanished(job, group)
        for group, reason in never.values():
            self._never(group, reason)
        self._say_why_stalled()
        self._cancel_surplus()
        self._backoff.asked(changed)

    def _say_why_stalled(self) -> None:
        """Tasks are queued and every job of the run pends (a busy cluster, a held job, a
        node down): not an error, but the user must not wait without knowing why."""
        now = time.monotonic()
        with self._lock:
            queued = sum(g.queued for g in self._groups.values())
            pending = [r for j, r in self._pending.items() if j in self._element_group]
            stalled = queued > 0 and pending and len(pending) == len(self._element_group)
            if not stalled:
                self._stalled = None
                return
            if not all(r and r != "None" for r in pending):  # the scheduler has not looked yet
                return
            if self._stalled is None:
                self._stalled = (now, now + _STALL_WARN)
                return
            since, due = self._stalled
            if now < due:
                return
            self._stalled = (since, now + _STALL_REPEAT)
        reasons = ", ".join(f"Reason={r} ({n} job(s))"
                            for r, n in sorted(_count(pending).items()))
        log.warning("%d task(s) queued for %.0f s and none of this run's Slurm jobs runs yet: "
                    "they pend with %s (squeue -n %s shows them)", queued, now - since,
                    reasons, self.job_name)

    def _vanished(self, job: str, group: _Group) -> None:
        """An element left the queue without an ended marker: killed (node failure, kill -9)."""
        with self._lock:
            self._element_group.pop(job, None)
            self._pending.pop(job, None)
            group.elements.discard(job)
            self._totals["ended"] += 1
        claimed = [name for name in _listdir(self.run.join("claimed"))
                   if name.endswith(f"@{job}")]
        if not claimed:
            return
        why = self.slurm.why_ended(job)
        for name in claimed:
            if os.path.exists(self.run.join("replies", name)):
                continue  # the reply is read on the next scan
            attempt = self._take(name)
            self.run.unlink(os.path.join("claimed", name))
            if attempt is None:
                continue
            self._tidy(attempt)
            with self._lock:
                self._totals["lost"] += 1
            attempt.task.worker_lost(self._with_log(job, (
                f"Slurm job {job} ended without the result of {attempt.task.name}"
                + (f" ({why})" if why else ""))))

    def _never(self, group: _Group, reason: str) -> None:
        """Slurm says the group's jobs will never start: fail its tasks, cancel its jobs."""
        self._fail_group(group, TaskError(
            f"Slurm will never start the jobs of tasks with resources {group.resources or '{}'}: "
            f"they pend with Reason={reason} (resources or options this cluster cannot give)"))
        with self._lock:
            arrays = list(group.arrays)
        with contextlib.suppress(InterfaceError):
            self.slurm.cancel(arrays)

    def _cancel_surplus(self) -> None:
        """Pending elements of groups with no queued task will find nothing: cancel them."""
        with self._lock:
            arrays = []
            for group in self._groups.values():
                if group.queued <= 0 and any(j in self._pending for j in group.elements):
                    arrays += group.arrays
        if arrays:
            with contextlib.suppress(InterfaceError):
                self.slurm.cancel(arrays, pending_only=True)

    def _controller_back(self) -> None:
        """A Slurm command answered: the controller is (again) reachable."""
        if self._down_since is not None:
            self._back_at = time.monotonic()
            log.warning("the Slurm controller answers again")
        self._down_since = None

    def _settling(self) -> bool:
        """The controller came back within _SETTLE s: its refusals may be its nodes not
        registered yet, not the job."""
        return self._back_at is not None and time.monotonic() - self._back_at < _SETTLE

    def _controller_away(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.warning("the Slurm controller does not answer (%s); retrying for %g s",
                        exc, self.controller_timeout)
            return
        if now - self._down_since < self.controller_timeout:
            return
        error = InterfaceError(f"the Slurm controller has not answered for "
                               f"{now - self._down_since:.0f} s: {exc}")
        with self._lock:
            doomed = [a for a in self._attempts.values() if not a.over]
            for attempt in doomed:
                attempt.over = True
            self._attempts.clear()
            for group in self._groups.values():
                group.queued = 0
        for attempt in doomed:
            attempt.task.task_finished(error)
        if self._master is not None:
            self._master.workers_exhausted(str(error))
        self._down_since = now

    # -- tasks a dead master left in its run directory ----------------------------------------

    def _scan_adopted(self) -> None:
        """Replies and losses of adopted tasks; their elements' ends (one squeue per
        old run, at the queue's pace); an old run with nothing left is removed."""
        with self._lock:
            runs = list(self._adopted.values())
        for old in runs:
            replies = os.path.join(old.run_dir, "replies")
            for name in _listdir(replies):
                key = name.partition("@")[0]
                if name.endswith(".part") or not key.isdigit():
                    continue
                with self._lock:
                    attempt = old.tasks.pop(int(key), None)
                if attempt is None:
                    continue
                reply = batch.read_reply(os.path.join(replies, name))
                self._old_done(old.run_dir, attempt.key, name)
                if reply is None:
                    attempt.task.worker_lost(f"the reply of {attempt.task.name} from Slurm job "
                                             f"{attempt.job} could not be read")
                else:
                    deliver(attempt.task, reply)
            for name in _listdir(os.path.join(old.run_dir, "lost")):
                key = name.partition("@")[0]
                with self._lock:
                    attempt = old.tasks.pop(int(key), None) if key.isdigit() else None
                if attempt is not None:
                    why = ""
                    with contextlib.suppress(OSError), \
                            open(os.path.join(old.run_dir, "lost", name)) as fh:
                        why = fh.read().partition("\n")[2].strip()
                    self._old_done(old.run_dir, attempt.key, name, folder="lost")
                    attempt.task.worker_lost(why or f"Slurm job {attempt.job} lost it")
            now = time.monotonic()
            if now < old.next_look:
                continue
            old.next_look = now + max(1.0, self._backoff.due - now)
            if old.tasks:
                self._old_jobs_ended(old)
                continue
            # Nothing followed there: once its elements have ended (idle, as without a
            # journal) the old run is removed; a later submit may still take from it.
            try:
                if self.slurm.queue(old.job_name):
                    continue
            except InterfaceError:
                continue
            with self._lock:
                if old.tasks:
                    continue
                self._adopted.pop(old.run_dir, None)
            self._forget_run(old, cancel=False)

    def _old_jobs_ended(self, old: _Adopted) -> None:
        """Adopted tasks whose element left the queue without a reply are lost."""
        try:
            alive = {line.job for line in self.slurm.queue(old.job_name)}
        except InterfaceError:
            return
        with self._lock:
            gone = [a for a in old.tasks.values() if a.job not in alive]
        for attempt in gone:
            reply = os.path.join(old.run_dir, "replies", f"{attempt.key}@{attempt.job}")
            if os.path.exists(reply):
                continue  # read on the next scan
            with self._lock:
                if old.tasks.pop(attempt.key, None) is None:
                    continue
            why = self.slurm.why_ended(attempt.job)
            attempt.task.worker_lost(f"Slurm job {attempt.job} ended without the result of "
                                     f"{attempt.task.name}" + (f" ({why})" if why else ""))

    def _old_done(self, run_dir: str, key: int, name: str, folder: str = "replies") -> None:
        """An adopted task's files are read: remove them (unless files are kept)."""
        if batch.keep_files(self._master):
            return
        for path in (os.path.join(run_dir, folder, name), os.path.join(run_dir, "claimed", name)):
            with contextlib.suppress(OSError):
                os.unlink(path)
        shutil.rmtree(os.path.join(run_dir, "data", str(key)), ignore_errors=True)

    def _forget_run(self, old: _Adopted, cancel: bool = True) -> None:
        """An old run with nothing more to collect: cancel its jobs, remove its files
        (at close, or once its elements ended by themselves)."""
        if cancel:
            with contextlib.suppress(InterfaceError):
                self.slurm.cancel_name(old.job_name)
        if not batch.keep_files(self._master):
            shutil.rmtree(old.run_dir, ignore_errors=True)


@dataclass(eq=False)
class _Adopted:
    """The run directory of a dead master, and the tasks of it this master follows."""

    run_dir: str
    job_name: str
    tasks: dict[int, _Attempt] = field(default_factory=dict)
    next_look: float = 0.0


_ADOPTED = _Group("adopted", {}, [])  # the group of adopted attempts: none of ours


def _count(items: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def batch_write(path: str) -> None:
    """An empty marker file (a cancel), quietly."""
    with contextlib.suppress(OSError):
        open(path, "wb").close()


def _listdir(path: str) -> list[str]:
    try:
        return [name for name in os.listdir(path) if not name.startswith(".")]
    except FileNotFoundError:
        return []
