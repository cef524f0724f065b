"""A real one-node Slurm cluster with munge on 127.0.0.1, for PyMW's tests and benchmarks.

Follows shared/recipes/slurm-single-node.md: munged, slurmctld and slurmd run from one
temporary run directory with free ports chosen at start, nothing system-wide is
configured, and ``stop()`` ends the three daemons by pid and removes the directory.
Several clusters (several test sessions) can run side by side.

What a test must do: point the client commands at ``cluster.conf`` (``SLURM_CONF``;
``as_client()`` sets it for the duration of a ``with``). Jobs run as root on this host,
so any directory works as a shared ``work_dir``.

CLI: ``python tests/slurm/cluster.py smoke``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol",
           "scancel", "sinfo")
# Small on purpose: arrays larger than this are split (tested with a handful of tasks),
# finished jobs leave the controller quickly, and a job past its walltime is killed at once.
MAX_ARRAY_SIZE = 5
CONFIG = """\
ClusterName=pymwtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={run}/munge/sock
CredType=cred/munge
StateSaveLocation={run}/slurm/state
SlurmdSpoolDir={run}/slurm/spool/%n
SlurmctldPidFile={run}/slurm/slurmctld.pid
SlurmdPidFile={run}/slurm/slurmd.pid
SlurmctldLogFile={run}/slurm/log/slurmctld.log
SlurmdLogFile={run}/slurm/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
MaxArraySize={max_array}
MinJobAge=30
KillWait=2
OverTimeLimit=0
InactiveLimit=0
MessageTimeout=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def missing_requirements() -> str | None:
    """Why no cluster can start here, or None."""
    if os.geteuid() != 0:
        return "the Slurm test cluster runs its daemons as root"
    missing = [name for name in DAEMONS
               if shutil.which(name) is None and not os.path.exists(f"/usr/sbin/{name}")]
    if missing:
        return f"Slurm or munge is not installed (missing {', '.join(missing)}; " \
               "apt-get install slurm-wlm munge)"
    return None


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    """munged + slurmctld + slurmd for one node, all state under one temporary directory."""

    def __init__(self, max_array_size: int = MAX_ARRAY_SIZE) -> None:
        self.max_array_size = max_array_size
        self.run_dir = ""
        self.conf = ""
        self.host = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self._procs: dict[str, subprocess.Popen] = {}

    # -- life -----------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Bring the cluster up; RuntimeError with the daemons' log tail if it does not come."""
        reason = missing_requirements()
        if reason:
            raise RuntimeError(reason)
        self.run_dir = tempfile.mkdtemp(prefix="pymw-slurm-cluster-")
        run = self.run_dir
        try:
            os.chmod(run, 0o755)
            os.mkdir(f"{run}/munge", 0o711)
            for sub in ("state", "spool", "log", "out"):
                os.makedirs(f"{run}/slurm/{sub}")
            subprocess.run([_binary("mungekey"), "-c", "-k", f"{run}/munge/munge.key"],
                           check=True, capture_output=True, timeout=30)
            self._spawn("munged", [
                _binary("munged"), "-F", f"--key-file={run}/munge/munge.key",
                f"--socket={run}/munge/sock", f"--pid-file={run}/munge/pid",
                f"--log-file={run}/munge/log", f"--seed-file={run}/munge/seed",
            ])
            deadline = time.monotonic() + timeout
            self._wait(lambda: subprocess.run(
                ["munge", "-S", f"{run}/munge/sock", "-n"], capture_output=True, timeout=10,
            ).returncode == 0, deadline, "munged to answer")
            ctld_port, slurmd_port = _free_ports(2)
            self.conf = f"{run}/slurm/slurm.conf"
            with open(self.conf, "w") as fh:
                fh.write(CONFIG.format(host=self.host, run=run, ctld_port=ctld_port,
                                       slurmd_port=slurmd_port, cpus=self.cpus,
                                       max_array=self.max_array_size))
            os.chmod(self.conf, 0o644)
            self._spawn("slurmctld", [_binary("slurmctld"), "-D", "-f", self.conf])
            self._spawn("slurmd", [_binary("slurmd"), "-D", "-f", self.conf])
            self._wait(self._idle, deadline, "the node to be idle (sinfo %T)")
        except BaseException:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"the Slurm test cluster did not start:\n{tail}") from None

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(os.path.join(self.run_dir, f"{name}.stdio"), "wb")  # noqa: SIM115
        try:
            self._procs[name] = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env(), start_new_session=True,
            )
        finally:
            log.close()

    def _wait(self, ready, deadline: float, what: str) -> None:
        while not ready():
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def _node_states(self) -> set[str]:
        """The node's states as sinfo gives them; none while the controller does not answer."""
        r = subprocess.run([_binary("sinfo"), "-h", "-o", "%T"], capture_output=True,
                           text=True, env=self.env(), timeout=30)
        return set(r.stdout.split()) if r.returncode == 0 else set()

    def _idle(self) -> bool:
        return "idle" in self._node_states()

    def _end(self, name: str) -> None:
        """SIGTERM to one daemon, SIGKILL after 15 s."""
        proc = self._procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """SIGTERM to slurmd, slurmctld and munged (in that order), wait, remove the run dir.

        Job steps (the jobs' own processes) are started by slurmstepd in sessions of
        their own; any left after slurmd stops are killed too.
        """
        for name in ("slurmd", "slurmctld", "munged"):
            self._end(name)
        if self.run_dir:
            self._kill_leftovers()
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = ""

    def stop_daemons(self, *names: str) -> None:
        """End some of the daemons (``"slurmctld"``, ``"slurmd"``) as a crash or an admin
        would: running jobs go on; without slurmctld every client command fails."""
        for name in names:
            self._end(name)

    def start_daemons(self, *names: str, timeout: float = 60.0, settled: bool = True) -> None:
        """Start stopped daemons again on the same state (slurmctld recovers its jobs).

        With ``settled`` (the default) wait until the node takes jobs again: a restarted
        controller answers at once but refuses jobs ("Requested node configuration is not
        available") until slurmd has registered with it.
        """
        commands = {"slurmctld": [_binary("slurmctld"), "-D", "-f", self.conf],
                    "slurmd": [_binary("slurmd"), "-D", "-f", self.conf]}
        for name in names:
            if name not in self._procs:
                self._spawn(name, commands[name])
        deadline = time.monotonic() + timeout
        self._wait(self._answers, deadline, "slurmctld to answer")
        if settled:
            self._wait(lambda: self.command("sbatch", "--test-only", "--mem=1M", "--wrap",
                                            "true").returncode == 0,
                       deadline, "the node to take jobs again (sbatch --test-only)")

    def _answers(self) -> bool:
        return bool(self._node_states())

    def _kill_leftovers(self) -> None:
        """slurmstepd processes of this cluster (they name its spool dir) and their trees."""
        marker = self.run_dir.encode()
        for pid in _pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read()
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    environ = fh.read()
            except OSError:
                continue
            if marker in cmdline or marker in environ:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    # -- use --------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment for client commands and daemons: ours plus SLURM_CONF."""
        env = dict(os.environ)
        if self.conf:
            env["SLURM_CONF"] = self.conf
        return env

    @contextlib.contextmanager
    def as_client(self) -> Iterator[SlurmCluster]:
        """Point this process's Slurm commands (and PyMW's) at the cluster."""
        saved = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = self.conf
        try:
            yield self
        finally:
            if saved is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = saved

    def command(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a Slurm client command against the cluster (text output)."""
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env(),
                              timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        """The end of each daemon's log, for failure messages."""
        out = []
        for path in ("slurm/log/slurmctld.log", "slurm/log/slurmd.log", "munge/log",
                     "slurmctld.stdio", "slurmd.stdio", "munged.stdio"):
            full = os.path.join(self.run_dir or "/nonexistent", path)
            try:
                with open(full, errors="replace") as fh:
                    text = fh.read().splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(out)

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _smoke() -> None:
    with SlurmCluster() as cluster:
        started = time.monotonic()
        r = cluster.command("sbatch", "--parsable", "-o", f"{cluster.run_dir}/slurm/out/%j.out",
                            "--wrap", "hostname")
        print("sbatch:", r.returncode, r.stdout.strip(), r.stderr.strip())
        job = r.stdout.strip()
        while cluster.command("squeue", "-h", "-j", job, "-o", "%i").stdout.strip():
            if time.monotonic() - started > 60:
                sys.exit("the job did not finish within 60 s")
            time.sleep(0.2)
        print(f"job {job} done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    if sys.argv[1:] == ["smoke"]:
        _smoke()
    else:
        sys.exit("usage: cluster.py smoke")
