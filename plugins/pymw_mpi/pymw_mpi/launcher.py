"""Starting, and reliably ending, the MPI job of a self-launched master.

Open MPI gives each rank a process group of its own, but they all stay in the
session of ``mpiexec``. The job is started as a new session, so ending it for good
is: every process of that session, found in ``/proc``, gets SIGKILL. That reaps
ranks left orphaned by a killed ``mpiexec`` too.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import time

from pymw_core.errors import InterfaceError

# Flags each implementation needs for PyMW's rules: ranks may outnumber cores (the
# relay mostly sleeps), and one dead rank must not abort the whole job.
_FLAGS = {
    "openmpi": ["--oversubscribe", "--enable-recovery"],
    "mpich": ["-disable-auto-cleanup"],
    "unknown": [],
}


def resolve(launcher: str | list[str] | tuple[str, ...]) -> list[str]:
    """The launcher as an argument list whose program exists; else a one-line InterfaceError."""
    argv = [launcher] if isinstance(launcher, str) else list(launcher)
    if not argv or not all(isinstance(a, str) and a for a in argv):
        raise InterfaceError(f"launcher must be a program name or a list of strings, "
                             f"not {launcher!r}")
    found = shutil.which(argv[0])
    if found is None:
        raise InterfaceError(
            f"the MPI launcher {argv[0]!r} was not found: install Open MPI "
            "(apt-get install openmpi-bin) or name yours with launcher=...")
    return [found, *argv[1:]]


def require_mpi4py() -> None:
    """mpi4py must be importable here (the ranks run this Python); MPI is not initialised."""
    try:
        found = importlib.util.find_spec("mpi4py") is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        found = False
    if not found:
        raise InterfaceError(
            "mpi4py is not installed: pip install mpi4py (it builds against an MPI library: "
            "apt-get install libopenmpi-dev)")


def implementation(program: str) -> str:
    """Which MPI family ``program`` launches for: "openmpi", "mpich" or "unknown"."""
    try:
        text = subprocess.run([program, "--version"], capture_output=True, text=True,
                              timeout=20, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if "Open MPI" in text or "OpenRTE" in text or "Open RTE" in text:
        return "openmpi"
    if "HYDRA" in text or "MPICH" in text:
        return "mpich"
    return "unknown"


def flags(family: str) -> list[str]:
    return list(_FLAGS.get(family, []))


def forward_env(family: str, name: str) -> list[str]:
    """Arguments that pass environment variable ``name`` to ranks on other nodes too."""
    if family == "openmpi":
        return ["-x", name]
    if family == "mpich":
        return ["-genvlist", name]
    return []


def inside_mpi_job() -> bool:
    """Whether this process is one rank of several of a running MPI job."""
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"):
        try:
            if int(os.environ.get(name, "1")) > 1:
                return True
        except ValueError:
            pass
    return False


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes whose session is ``sid``, read from /proc (no psutil)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != b"Z":
            members.append(int(entry))
    return members


def end_job(popen: subprocess.Popen, grace: float = 2.0) -> None:
    """Let the job end by itself for ``grace`` seconds, then TERM ``mpiexec``, then KILL all.

    TERM first lets ``mpiexec`` stop its daemons on other nodes; the KILL of every
    process of its session then covers what it could not (or would not) stop.
    """
    try:
        popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
    sid = popen.pid
    for _ in range(50):
        members = [p for p in session_members(sid) if p != os.getpid()]
        if not members:
            break
        for pid in members:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.02)
        _reap(popen)
    _reap(popen)
    try:
        popen.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        pass


def _reap(popen: subprocess.Popen) -> None:
    try:
        popen.poll()
    except OSError:
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass
