"""A real single-machine HTCondor pool on 127.0.0.1 for PyMW's tests and benchmarks.

Debian 12 ships no HTCondor, so the daemons (Debian 13's ``htcondor``) run in a debootstrap
chroot built once and cached at ``DEFAULT_ROOT``; the host's PyPI ``htcondor2`` client talks
to them over loopback as ``tester`` (uid 1000, CLAIMTOBE: the schedd refuses root's jobs).
Recipe and its pitfalls: shared/recipes/htcondor-personal-pool.md.

What a test must do:

* Set ``CONDOR_CONFIG = pool.condor_config`` before importing ``htcondor2``, or call
  ``htcondor2.reload_config()`` after setting it.
* Put every submit/work dir under ``pool.shared_dir`` (bind-mounted at the same path in the
  chroot) and make it writable by uid 1000: use ``pool.make_job_dir(name)``. A plain
  ``os.makedirs`` dir is root's 0755 and jobs get held; pytest's ``tmp_path`` is 0700 and
  invisible to the chroot. Job outputs come back owned by uid 1000.
* Create the job event log before opening ``htcondor2.JobEventLog`` on it, in such a dir.
* Run jobs with ``pool.python_for_jobs()`` and ``transfer_executable = False``. It is the
  *base* interpreter: a venv's site-packages are not visible to jobs.
* Expect one pool per machine (collector on 127.0.0.1:9618). The live process that started
  it owns it (flock on ``<root>.run.lock``); another process's ``start()`` raises "in use",
  its ``stop()`` leaves it alone. Once the owner is gone, ``start()``/``stop()`` kill and
  unmount whatever it left in the chroot. Every ``start()`` wipes the job queue, spool and
  daemon logs (``<root>/var/log/condor``): no job survives a restart.

CLI: ``python tests/condor/pool.py build|smoke`` (smoke needs ``htcondor2``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

DEFAULT_ROOT = "/var/cache/pymw-tests/condor-trixie"
SUITE, MIRROR = "trixie", "http://deb.debian.org/debian"
# htcondor, plus the libraries the host Python's extension modules (ssl, ctypes, sqlite3,
# bz2, lzma, readline...) load when a job runs that interpreter inside the chroot.
PACKAGES = (
    "htcondor",
    "libffi8",
    "libssl3t64",
    "libsqlite3-0",
    "libbz2-1.0",
    "liblzma5",
    "libexpat1",
    "zlib1g",
    "libuuid1",
    "libncursesw6",
    "libreadline8t64",
)
# The recipe's config; benchmarks off: they burn a core ~15 s after each start and make
# a graceful startd shutdown wait for them.
DAEMON_CONFIG = """\
CONDOR_HOST = 127.0.0.1
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
ENABLE_IPV6 = False
use ROLE : CentralManager
use ROLE : Submit
use ROLE : Execute
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, IDTOKENS, CLAIMTOBE
ALLOW_READ = *
ALLOW_WRITE = *
ALLOW_ADMINISTRATOR = *
ALLOW_DAEMON = *
ALLOW_NEGOTIATOR = *
BASE_CGROUP =
CGROUP_MEMORY_LIMIT_POLICY = none
MOUNT_UNDER_SCRATCH =
NUM_CPUS = 4
UPDATE_INTERVAL = 5
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_MIN_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
SCHEDD_INTERVAL = 5
SCHEDD_MIN_INTERVAL = 1
STARTER_UPDATE_INTERVAL = 5
JOB_DEFAULT_LEASE_DURATION = 60
RunBenchmarks = False
BENCHMARKS_JOBLIST =
"""
CLIENT_CONFIG = """\
CONDOR_HOST = 127.0.0.1
COLLECTOR_HOST = 127.0.0.1
NETWORK_INTERFACE = 127.0.0.1
ENABLE_IPV6 = False
SEC_CLIENT_AUTHENTICATION_METHODS = CLAIMTOBE
SEC_CLAIMTOBE_USER = tester
"""
# A clean environment for everything run in the chroot: a test's CONDOR_CONFIG or
# _CONDOR_* variables must not reach the daemons.
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}
STAMP, OWNED = ".pymw-stamp", ".pymw-owned"
_DIGEST = hashlib.sha256(repr((SUITE, MIRROR, PACKAGES, DAEMON_CONFIG)).encode()).hexdigest()


def _run(cmd: list[str], log: str | None = None, env: dict[str, str] | None = None) -> None:
    """Run quietly (output to ``log``); on failure raise with the output's tail."""
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    if log:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    if r.returncode:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-20:])
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{tail}")


def _stamped(root: str) -> bool:
    try:
        with open(os.path.join(root, STAMP)) as f:
            return f.read().strip() == _DIGEST
    except OSError:
        return False


def _mounts_under(root: str) -> list[str]:
    """Mount points at or below ``root``, in /proc/mounts order (parents first)."""
    with open("/proc/mounts") as f:
        points = [
            re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[1]) for line in f
        ]
    return [p for p in points if p == root or p.startswith(root + "/")]


def _unmount_all(root: str) -> None:
    """Unmount everything below ``root``, children first, lazily if busy; raise if any stay."""
    for _ in range(3):
        for p in reversed(_mounts_under(root)):
            if subprocess.run(["umount", p], capture_output=True).returncode:
                subprocess.run(["umount", "-l", p], capture_output=True)
    if left := _mounts_under(root):
        raise RuntimeError(f"cannot unmount {left}")


def _rooted_pids(root: str) -> list[int]:
    """Live processes chrooted into ``root``. The master starts each daemon in a session of
    its own, so its process group misses them; this also finds a dead test run's daemons."""
    pids = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            r = os.readlink(f"/proc/{name}/root")  # fails for zombies: they are dead anyway
        except OSError:
            continue
        if (r == root or r.startswith(root + "/")) and int(name) != os.getpid():
            pids.append(int(name))
    return pids


def _kill_rooted(root: str, grace: float = 1.0) -> None:
    """TERM every process chrooted into ``root``; KILL what is left after ``grace`` s
    (orphaned daemons shut down gracefully for long, and the next start wipes their state)."""
    sig, deadline = signal.SIGTERM, time.monotonic() + grace
    while (pids := _rooted_pids(root)) and time.monotonic() < deadline + 10:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        sig = signal.SIGKILL if time.monotonic() > deadline else sig
        time.sleep(0.1)


def _mkdirs_in(root: str, path: str) -> str:
    """Create ``root + path``; new dirs get 0755 because uid 1000 must traverse them."""
    cur = root
    for part in path.strip("/").split("/"):
        cur = os.path.join(cur, part)
        if not os.path.isdir(cur):
            os.mkdir(cur)
            os.chmod(cur, 0o755)
    return cur


def _owner_lock(root: str) -> int | None:
    """Take ``root``.run.lock (flock, no wait) as the one live owner of the pool: an fd, or
    None while another live process owns it. The kernel drops it when its owner dies, so a
    crashed run's leftovers can be cleaned up, but a running pool is never torn down."""
    fd = os.open(root + ".run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _in_use(root: str) -> RuntimeError:
    with open(root + ".run.lock") as f:
        pid = f.read().strip()
    return RuntimeError(f"the HTCondor pool in {root} is in use by process {pid} (one per machine)")


def missing_requirements(root: str = DEFAULT_ROOT) -> str | None:
    """None if a pool can be brought up here, else why not (for ``pytest.skip``)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "the HTCondor test pool needs root on Linux (it chroots and bind-mounts)"
    for tool in ("chroot", "mount", "umount"):
        if not shutil.which(tool):
            return f"the HTCondor test pool needs the {tool} command"
    if not (
        _stamped(os.path.realpath(root)) or shutil.which("debootstrap") or shutil.which("apt-get")
    ):
        return "debootstrap is missing and there is no apt-get to install it"
    return None


def ensure_chroot(path: str = DEFAULT_ROOT) -> str:
    """Build the chroot unless its stamp matches this file's packages and config (so a
    half-built or outdated one is rebuilt); an flock serialises concurrent builders."""
    path = os.path.realpath(path)
    if _stamped(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _stamped(path):
            _build(path)
    return path


def _build(path: str) -> None:
    log, env = path + ".build.log", {**os.environ, **CHROOT_ENV}
    print(f"pool.py: building {path} (about a minute; log in {log})", file=sys.stderr)
    open(log, "w").close()
    if not shutil.which("debootstrap"):
        _run(["apt-get", "update", "-qq"], log, env)
        _run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap"], log, env
        )
    if os.path.lexists(path):
        if os.listdir(path) and not os.path.exists(os.path.join(path, OWNED)):
            raise RuntimeError(f"{path} exists and was not made by pool.py: not deleting it")
        if (fd := _owner_lock(path)) is None:
            raise _in_use(path)
        try:
            _kill_rooted(path)
            _unmount_all(path)  # never rmtree through a bind mount of host files
            shutil.rmtree(path)
        finally:
            os.close(fd)
    os.makedirs(path)
    open(os.path.join(path, OWNED), "w").close()
    _run(["debootstrap", "--variant=minbase", SUITE, path, MIRROR], log)
    with open(f"{path}/usr/sbin/policy-rc.d", "w") as f:  # packages must not start services
        f.write("#!/bin/sh\nexit 101\n")
    os.chmod(f"{path}/usr/sbin/policy-rc.d", 0o755)
    try:
        _run(["mount", "-t", "proc", "proc", f"{path}/proc"])
        _run(["mount", "--bind", "/dev", f"{path}/dev"])
        for cmd in (
            ["update", "-qq"],
            ["install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
            ["clean"],
        ):
            _run(["chroot", path, "apt-get", *cmd], log, CHROOT_ENV)
    finally:
        _unmount_all(path)
    _run(["chroot", path, "useradd", "-m", "-u", "1000", "tester"], log, CHROOT_ENV)
    with open(f"{path}/etc/condor/config.d/99-personal.conf", "w") as f:
        f.write(DAEMON_CONFIG)
    with open(f"{path}/{STAMP}.tmp", "w") as f:
        f.write(_DIGEST + "\n")
    os.replace(f"{path}/{STAMP}.tmp", f"{path}/{STAMP}")


def _python_tree() -> tuple[str, str]:
    """(real base interpreter, its prefix): no venv, no shim. Refuses a prefix that would
    hide the chroot's own system (Debian's /usr/bin/python3) or that uid 1000 cannot enter."""
    exe = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if prefix in ("/", "/usr", "/bin", "/lib", "/etc", "/var") or not exe.startswith(prefix):
        raise RuntimeError(
            f"cannot mount Python prefix {prefix} ({exe}) into the chroot: "
            "use a Python with its own prefix (pyenv, uv, /opt/...)"
        )
    d = exe
    while d != os.path.dirname(prefix):
        if not os.stat(d).st_mode & 0o001:
            raise RuntimeError(f"{d} is not traversable by uid 1000 (needs o+x)")
        d = os.path.dirname(d)
    return exe, prefix


class CondorPool:
    """One personal pool; ``start()``/``stop()`` any number of times, or use as a context."""

    def __init__(self, base_dir: str | None = None, root: str = DEFAULT_ROOT) -> None:
        self.root = os.path.realpath(root)
        self.base_dir = os.path.realpath(base_dir or f"/var/tmp/pymw-condor-{os.getpid()}")
        self.shared_dir = os.path.join(self.base_dir, "shared")
        self.condor_config = os.path.join(self.base_dir, "condor_config")
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None  # fd of the owner lock while this object owns the pool
        self._own_base = base_dir is None  # a directory we chose is ours to remove at stop()

    def start(self, timeout: float = 120) -> None:
        """Build (cached), clean up leftovers, mount, launch; return once a slot, the schedd
        and the negotiator are in the collector. ``timeout`` does not cover a build."""
        if reason := missing_requirements(self.root):
            raise RuntimeError(reason)
        ensure_chroot(self.root)
        if not self._own():
            raise _in_use(self.root)
        self._teardown()  # also what a killed master or a crashed process left behind
        with socket.socket() as s:
            s.settimeout(1)
            busy = s.connect_ex(("127.0.0.1", 9618)) == 0
        if busy:
            self.stop()
            raise RuntimeError(
                f"127.0.0.1:9618 is in use by a process outside {self.root}"
                ": another HTCondor collector? Stop it first."
            )
        try:
            self._launch()
            self._wait_ready(time.monotonic() + timeout)
        except Exception as exc:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"HTCondor pool failed to start: {exc}\n{tail}") from exc
        except BaseException:
            self.stop()
            raise

    def _launch(self) -> None:
        r = self.root
        for d in ("var/spool/condor", "var/lib/condor/execute", "var/log/condor"):
            shutil.rmtree(f"{r}/{d}", ignore_errors=True)  # fresh queue and logs
        # Runtime dirs, made by systemd-tmpfiles on a booted system.
        dirs = "/run/condor /run/lock/condor /var/spool/condor /var/lib/condor/execute"
        dirs += " /var/lib/condor /var/log/condor"
        _run(
            ["chroot", r, "sh", "-c", f"mkdir -p {dirs} && chown condor:condor {dirs}"],
            env=CHROOT_ENV,
        )
        os.makedirs(self.shared_dir, exist_ok=True)
        os.chmod(self.shared_dir, 0o1777)
        with open(self.condor_config, "w") as f:
            f.write(CLIENT_CONFIG)
        _run(["mount", "-t", "proc", "proc", f"{r}/proc"])
        _run(["mount", "--bind", "/dev", f"{r}/dev"])
        _run(["mount", "--bind", self.shared_dir, _mkdirs_in(r, self.shared_dir)])
        try:
            prefix = _python_tree()[1]
        except RuntimeError:
            pass  # the pool still works; python_for_jobs() tells why jobs cannot use it
        else:
            os.chmod(f"{r}/root", 0o755)  # the chroot's /root (0700), never the host's
            target = _mkdirs_in(r, prefix)
            _run(["mount", "--bind", prefix, target])
            _run(["mount", "-o", "remount,bind,ro", target])
        with open(os.path.join(self.base_dir, "master.out"), "wb") as out:
            # start_new_session is setsid(2): the master leads its own session and group
            self._proc = subprocess.Popen(
                ["chroot", r, "/usr/sbin/condor_master", "-f"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=CHROOT_ENV,
                start_new_session=True,
            )

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        cmd = ["chroot", self.root, "condor_status", "-any", "-af", "MyType"]
        while self._proc.poll() is None:
            q = subprocess.run(cmd, capture_output=True, text=True, env=CHROOT_ENV, timeout=30)
            if {"Machine", "Scheduler", "Negotiator"} <= set(q.stdout.split()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out; collector has {sorted(set(q.stdout.split()))}")
            time.sleep(0.2)
        raise RuntimeError(f"condor_master exited with {self._proc.returncode}")

    def stop(self) -> None:
        """Kill the daemons, unmount all under the chroot, give up ownership. Idempotent; also
        cleans up after a crashed process, but leaves a pool another live process owns."""
        if not self._own():
            return
        try:
            self._teardown()
        finally:
            if self._lock is not None:
                os.close(self._lock)
            self._lock = None
            if self._own_base:  # after the unmounts: nothing of the chroot is beneath it now
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def _own(self) -> bool:
        """Become (or stay) the pool's owner; False while another live process owns it."""
        if self._lock is None:
            self._lock = _owner_lock(self.root)
        return self._lock is not None

    def _teardown(self) -> None:
        if (proc := self._proc) is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)  # fast shutdown: running jobs die at once
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(15)
            with contextlib.suppress(ProcessLookupError):  # group members left behind
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self._proc = None
        _kill_rooted(self.root)  # TERM, then KILL
        _unmount_all(self.root)
        for empty in (self.shared_dir, self.base_dir):  # the mount point, then its folder
            with contextlib.suppress(OSError):
                os.rmdir(self.root + empty)

    @contextlib.contextmanager
    def as_client(self) -> Iterator[None]:
        """Point this process's htcondor2 bindings at the pool (CONDOR_CONFIG), then back."""
        import htcondor2

        saved = os.environ.get("CONDOR_CONFIG")
        os.environ["CONDOR_CONFIG"] = self.condor_config
        htcondor2.reload_config()
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("CONDOR_CONFIG", None)
            else:
                os.environ["CONDOR_CONFIG"] = saved
            htcondor2.reload_config()

    def schedd(self, on: bool, timeout: float = 60) -> None:
        """Stop the schedd (``on=False``: as a crashed or rebooting submit host looks to a
        client) or start it again; returns once the collector agrees."""
        cmd = "condor_on" if on else "condor_off"
        _run(["chroot", self.root, cmd, *([] if on else ["-fast"]), "-daemon", "schedd"],
             env=CHROOT_ENV)
        query = ["chroot", self.root, "condor_status", "-schedd", "-af", "Name"]
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(query, capture_output=True, text=True, env=CHROOT_ENV,
                                 timeout=30).stdout.strip()
            if bool(out) == on:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the schedd did not {'start' if on else 'stop'} within "
                                   f"{timeout} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def python_for_jobs(self) -> str:
        """The host's real base interpreter; start() mounts its prefix read-only at the same
        path in the chroot. Raises RuntimeError if jobs cannot run it that way."""
        return _python_tree()[0]

    def make_job_dir(self, name: str) -> str:
        """A directory ``shared_dir/name``, mode 0777 so the job owner (uid 1000) can write."""
        path = os.path.join(self.shared_dir, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o777)
        return path

    def log_tail(self, lines: int = 30) -> str:
        """The ends of master.out and of the main daemon logs, for error messages."""
        out = []
        for p in (
            os.path.join(self.base_dir, "master.out"),
            *(f"{self.root}/var/log/condor/{n}Log" for n in ("Master", "Sched", "Start")),
        ):
            try:
                with open(p, errors="replace") as f:
                    out.append(f"--- {p}\n" + "".join(f.readlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(out)

    def __enter__(self) -> CondorPool:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _smoke(n: int = 3) -> None:
    """Start a pool, run ``n`` trivial host-Python jobs as tester, print timings, stop."""
    t0 = time.monotonic()
    ensure_chroot()
    t1 = time.monotonic()
    with CondorPool() as pool:
        t2 = time.monotonic()
        os.environ["CONDOR_CONFIG"] = pool.condor_config
        import htcondor2  # type: ignore[import-untyped]
        from htcondor2 import JobEventType as Ev

        htcondor2.reload_config()
        jobdir = pool.make_job_dir("smoke")
        log = os.path.join(jobdir, "jobs.log")
        open(log, "w").close()
        os.chmod(log, 0o666)
        sub = htcondor2.Submit(
            {
                "executable": pool.python_for_jobs(),
                "arguments": "\"-c 'print(42)'\"",
                "transfer_executable": "False",
                "initialdir": jobdir,
                "log": log,
                "output": "out.$(ProcId)",
                "error": "err.$(ProcId)",
            }
        )
        t3 = time.monotonic()
        htcondor2.Schedd().submit(sub, count=n)
        done, events = 0, htcondor2.JobEventLog(log)
        while done < n and time.monotonic() - t3 < 120:
            for ev in events.events(stop_after=1):
                if ev.type in (Ev.JOB_HELD, Ev.JOB_ABORTED):
                    raise RuntimeError(f"job {ev.cluster}.{ev.proc}: {ev}")
                done += ev.type == Ev.JOB_TERMINATED
        t4 = time.monotonic()
        outs = [os.path.join(jobdir, f"out.{i}") for i in range(n)]
        got = [(Path(p).read_text().strip(), os.stat(p).st_uid) for p in outs]
        if done < n or got != [("42", 1000)] * n:
            raise RuntimeError(f"{done}/{n} jobs done, (output, owner uid): {got}")
    print(
        f"chroot ready {t1 - t0:.1f} s, start {t2 - t1:.1f} s, {n} jobs {t4 - t3:.1f} s, "
        f"stop {time.monotonic() - t4:.1f} s; (output, owner uid): {got}"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        t = time.monotonic()
        print(ensure_chroot(), f"ready in {time.monotonic() - t:.1f} s")
    elif sys.argv[1:] == ["smoke"]:
        _smoke()
    else:
        sys.exit("usage: pool.py build|smoke")
