"""Slurm's own commands, in bounded time, with their machine-readable output parsed.

Every call to the controller goes through :class:`Slurm`, which counts them (the
documented "controller calls per minute" are measured from ``calls``) and turns a
controller that cannot be reached into :class:`Unreachable`, apart from a command
that the controller answered with a refusal (:class:`Refused`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

from pymw_core.errors import InterfaceError

# What Slurm's clients say when the controller is away or busy (the call may succeed later).
_TRANSIENT = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused|"
    r"Slurm temporarily unable|Resource temporarily unavailable|Zero Bytes were transmitted|"
    r"Communication connection failure|Transport endpoint|Connection timed out|"
    r"Insane message length|Could not establish a configuration source|"
    r"Unable to establish controller machine",
    re.IGNORECASE,
)
# Pending reasons after which a job never starts without someone changing the cluster
# or the request: its tasks fail instead of waiting for ever.
NEVER_REASONS = frozenset({
    "PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
    "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed",
})
SQUEUE_FORMAT = "%i|%T|%r"


class Unreachable(InterfaceError):
    """The controller did not answer (or the command did not finish in time)."""


class Refused(InterfaceError):
    """The controller answered and refused (a bad option, an impossible request)."""


@dataclass(frozen=True)
class JobLine:
    """One line of ``squeue -h -r -o %i|%T|%r``: an array element or a plain job."""

    job: str  # "ARRAY_INDEX" or "JOBID"
    state: str  # PENDING, RUNNING, COMPLETING, ...
    reason: str


class Slurm:
    """Runs ``sbatch``/``squeue``/``scontrol``/``scancel`` with a timeout; counts calls."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.calls = 0
        self._lock = threading.Lock()
        missing = [c for c in ("sbatch", "squeue", "scontrol", "scancel") if not shutil.which(c)]
        if missing:
            raise InterfaceError(f"Slurm's commands are not on PATH (missing "
                                 f"{', '.join(missing)}); run the master on a submit host")

    def run(self, *args: str, timeout: float | None = None) -> str:
        """stdout of the command; Unreachable or Refused with its stderr otherwise."""
        with self._lock:
            self.calls += 1
        limit = self.timeout if timeout is None else timeout
        try:
            done = subprocess.run(list(args), stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=limit, env=_environment())
        except subprocess.TimeoutExpired:
            raise Unreachable(f"`{args[0]}` did not answer within {limit:g} s "
                              f"({where()})") from None
        except OSError as exc:
            raise Unreachable(f"cannot run `{args[0]}`: {exc}") from exc
        if done.returncode:
            message = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
            kind = Unreachable if _TRANSIENT.search(done.stderr) else Refused
            raise kind(f"`{args[0]}` failed: {message} ({where()})")
        return done.stdout

    # -- the calls PyMW makes -------------------------------------------------------------

    def max_array_size(self) -> int:
        """MaxArraySize from ``scontrol show config`` (also the start-up reachability probe)."""
        out = self.run("scontrol", "show", "config")
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
        return int(match.group(1)) if match else 1001

    def submit(self, options: list[str], script: str, args: list[str]) -> str:
        """``sbatch --parsable``: the job id (an array's id)."""
        out = self.run("sbatch", "--parsable", *options, script, *args)
        return out.strip().splitlines()[-1].split(";")[0].strip()

    def test(self, options: list[str], script: str, args: list[str]) -> None:
        """``sbatch --test-only``: Refused if Slurm could never run such a job."""
        self.run("sbatch", "--test-only", *options, script, *args)

    def queue(self, name: str) -> list[JobLine]:
        """Every pending or running element of jobs named ``name``: one squeue call."""
        out = self.run("squeue", "-h", "-r", f"--name={name}", "-o", SQUEUE_FORMAT)
        lines = []
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3:
                lines.append(JobLine(*parts))
        return lines

    def why_ended(self, job: str) -> str:
        """``JobState=... Reason=...`` of a job from ``scontrol show job -o``, or ``""``."""
        try:
            out = self.run("scontrol", "show", "job", "-o", job)
        except InterfaceError:
            return ""
        fields = dict(re.findall(r"(\w+)=(\S*)", out))
        parts = []
        for key in ("JobState", "Reason", "ExitCode"):
            if fields.get(key) and fields[key] not in ("None", "(null)"):
                parts.append(f"{key}={fields[key]}")
        return " ".join(parts)

    def cancel_name(self, name: str) -> None:
        """``scancel --name``: every job of a run, even one this process did not submit."""
        self.run("scancel", f"--name={name}")

    def cancel(self, jobs: list[str], pending_only: bool = False) -> None:
        """``scancel`` the jobs (or only their pending elements), 500 ids a call."""
        for start in range(0, len(jobs), 500):
            extra = ["--state=PENDING"] if pending_only else []
            self.run("scancel", *extra, *jobs[start:start + 500])


def where() -> str:
    """The configuration Slurm's commands read, for error messages."""
    return f"SLURM_CONF={os.environ.get('SLURM_CONF', '(not set: the default configuration)')}"


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LC_ALL", "C")  # messages PyMW matches are in English
    return env


class Backoff:
    """The squeue pace: ``low`` s apart after a change, doubling to ``high`` while none."""

    def __init__(self, low: float, high: float) -> None:
        self.low = low
        self.high = high
        self.gap = low
        self.due = 0.0

    def hurry(self) -> None:
        """Something changed (a submit, a cancel, a lost task): ask soon."""
        self.gap = self.low
        self.due = min(self.due, time.monotonic() + self.low)

    def asked(self, changed: bool) -> None:
        self.gap = self.low if changed else min(self.gap * 2, self.high)
        self.due = time.monotonic() + self.gap
