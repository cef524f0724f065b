"""A real single-machine HTCondor pool on 127.0.0.1 for PyMW's tests and benchmarks.

Debian 12 ships no HTCondor, so the daemons (Debian 13's ``htcondor`` package) run in a
``debootstrap`` chroot built once and cached at ``DEFAULT_ROOT``; the host's PyPI
``htcondor2`` client talks to them over loopback (CLAIMTOBE as ``tester``, uid 1000,
because the schedd refuses root-owned jobs). Recipe: shared/recipes/htcondor-personal-pool.md.

What a test must know:

* Export ``CONDOR_CONFIG=pool.condor_config`` *before* importing ``htcondor2`` (or call
  ``htcondor2.reload_config()`` afterwards).
* Jobs run as uid 1000 inside the chroot, so every path a job or its shadow touches must be
  under ``pool.shared_dir`` (bind-mounted at the same path) and writable by uid 1000: use
  ``pool.make_job_dir(name)`` for submit/work dirs, never a root-owned 0755 dir or pytest's
  0700 ``tmp_path``. Output files come back owned by uid 1000.
* Create the job event log file before opening ``htcondor2.JobEventLog`` on it, inside such a
  dir, or no event is ever written.
* Jobs run the host interpreter ``pool.python_for_jobs()`` (the *base* interpreter: a venv's
  site-packages are not visible) with ``transfer_executable = False``.
* Only one pool can run per machine (the collector owns 127.0.0.1:9618); ``start()`` kills and
  unmounts whatever a crashed earlier run left in the chroot, whichever process made it.
* The job queue, spool and logs are wiped at every ``start()``: no job survives a restart.

CLI: ``python tests/condor/pool.py build|smoke`` (smoke needs ``htcondor2`` importable).
"""

from __future__ import annotations

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
from types import TracebackType

DEFAULT_ROOT = "/var/cache/pymw-tests/condor-trixie"
SUITE, MIRROR = "trixie", "http://deb.debian.org/debian"
# htcondor, plus the shared libraries the host Python's extension modules (ssl, ctypes,
# sqlite3, bz2, lzma, readline, ...) need when a job runs it inside the chroot.
PACKAGES = ("htcondor", "libffi8", "libssl3t64", "libsqlite3-0", "libbz2-1.0", "liblzma5",
            "libexpat1", "zlib1g", "libuuid1", "libncursesw6", "libreadline8t64")
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
# Daemons get a clean environment: a test's CONDOR_CONFIG or _CONDOR_* must not leak in.
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
              "DEBIAN_FRONTEND": "noninteractive"}
COLLECTOR = ("127.0.0.1", 9618)
STAMP = ".pymw-stamp"
_DIGEST = hashlib.sha256(repr((SUITE, MIRROR, PACKAGES, DAEMON_CONFIG, 1)).encode()).hexdigest()


def _run(cmd: list[str], log: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run quietly; on failure raise with the output's tail (appended to ``log`` if given)."""
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    if log:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    if r.returncode:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-20:])
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{tail}")
    return r.stdout


def _stamped(root: str) -> bool:
    try:
        with open(os.path.join(root, STAMP)) as f:
            return f.read().strip() == _DIGEST
    except OSError:
        return False


def _mounts_under(root: str) -> list[str]:
    """Mount points at or below ``root``, in /proc/mounts order (parents before children)."""
    with open("/proc/mounts") as f:
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[1])
                  for line in f]
    return [p for p in points if p == root or p.startswith(root + "/")]


def _unmount_all(root: str) -> None:
    """Unmount everything below ``root``, children first; lazily if busy; fail if any stay."""
    for _ in range(3):
        points = _mounts_under(root)
        if not points:
            return
        for p in reversed(points):
            if subprocess.run(["umount", p], capture_output=True).returncode:
                subprocess.run(["umount", "-l", p], capture_output=True)
    if _mounts_under(root):
        raise RuntimeError(f"cannot unmount {_mounts_under(root)}")


def _rooted_pids(root: str) -> list[int]:
    """Processes chrooted into ``root``: finds daemons and jobs even of a dead test process."""
    pids = []
    for name in os.listdir("/proc"):
        try:
            r = os.readlink(f"/proc/{name}/root") if name.isdigit() else ""
        except OSError:
            continue
        if (r == root or r.startswith(root + "/")) and int(name) != os.getpid():
            pids.append(int(name))
    return pids


def _kill_rooted(root: str, grace: float = 5.0) -> None:
    """TERM every process chrooted into ``root``, KILL what is left after ``grace`` seconds."""
    sig, deadline = signal.SIGTERM, time.monotonic() + grace
    while (pids := _rooted_pids(root)) and time.monotonic() < deadline + 10:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.1)


def _mkdirs_in(root: str, path: str) -> str:
    """Create ``root + path``; new parents get 0755 (uid 1000 must traverse them)."""
    cur = root
    for part in path.strip("/").split("/"):
        cur = os.path.join(cur, part)
        if not os.path.isdir(cur):
            os.mkdir(cur)
            os.chmod(cur, 0o755)
    return cur


def missing_requirements(root: str = DEFAULT_ROOT) -> str | None:
    """None if a pool can be brought up here, else why not (tests ``skip`` with it)."""
    if not sys.platform.startswith("linux"):
        return "the HTCondor test pool needs Linux (chroot and bind mounts)"
    if os.geteuid() != 0:
        return "the HTCondor test pool needs root (it builds a chroot and bind-mounts into it)"
    for tool in ("chroot", "mount", "umount"):
        if not shutil.which(tool):
            return f"the HTCondor test pool needs the {tool} command"
    if not _stamped(os.path.realpath(root)) and not (
            shutil.which("debootstrap") or shutil.which("apt-get")):
        return "debootstrap is missing and apt-get is not there to install it"
    return None


def ensure_chroot(path: str = DEFAULT_ROOT) -> str:
    """Build the Debian 13 chroot with HTCondor once; later calls return at once (stamp)."""
    path = os.path.realpath(path)
    if _stamped(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent builder finishes first; then re-check
        if not _stamped(path):
            _build(path)
    return path


def _build(path: str) -> None:
    log, env = path + ".build.log", {**CHROOT_ENV}
    print(f"pool.py: building HTCondor chroot {path} (about a minute; log {log})",
          file=sys.stderr)
    open(log, "w").close()
    if not shutil.which("debootstrap"):
        _run(["apt-get", "update", "-qq"], log, {**os.environ, **env})
        _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap"],
             log, {**os.environ, **env})
    if os.path.lexists(path):  # half-built or outdated: never rmtree through a bind mount
        _kill_rooted(path)
        _unmount_all(path)
        shutil.rmtree(path)
    _run(["debootstrap", "--variant=minbase", SUITE, path, MIRROR], log)
    with open(f"{path}/usr/sbin/policy-rc.d", "w") as f:  # packages must not start services
        f.write("#!/bin/sh\nexit 101\n")
    os.chmod(f"{path}/usr/sbin/policy-rc.d", 0o755)
    try:
        _run(["mount", "-t", "proc", "proc", f"{path}/proc"])
        _run(["mount", "--bind", "/dev", f"{path}/dev"])
        _run(["chroot", path, "apt-get", "update", "-qq"], log, env)
        _run(["chroot", path, "apt-get", "install", "-y", "-qq", "--no-install-recommends",
              *PACKAGES], log, env)
        _run(["chroot", path, "apt-get", "clean"], log, env)
    finally:
        _unmount_all(path)
    _run(["chroot", path, "useradd", "-m", "-u", "1000", "tester"], log, env)
    with open(f"{path}/etc/condor/config.d/99-personal.conf", "w") as f:
        f.write(DAEMON_CONFIG)
    os.chmod(f"{path}/root", 0o755)  # the chroot's /root, for a host Python under /root
    with open(f"{path}/{STAMP}.tmp", "w") as f:
        f.write(_DIGEST + "\n")
    os.replace(f"{path}/{STAMP}.tmp", f"{path}/{STAMP}")


def _python_tree() -> tuple[str, str]:
    """(real base interpreter, its installation prefix), refusing prefixes that would hide
    the chroot's own system, or that uid 1000 cannot traverse."""
    exe = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if prefix in ("/", "/usr", "/bin", "/lib", "/etc", "/var") or not exe.startswith(prefix):
        raise RuntimeError(f"cannot mount Python prefix {prefix} ({exe}) into the chroot: "
                           "use a Python with its own prefix (pyenv, uv, /opt/...)")
    d = exe
    while d != os.path.dirname(prefix):
        if not os.stat(d).st_mode & 0o001:
            raise RuntimeError(f"{d} is not traversable by uid 1000 (needs o+x)")
        d = os.path.dirname(d)
    return exe, prefix


class CondorPool:
    """One personal pool: ``start()``/``stop()`` any number of times, also as a context."""

    def __init__(self, base_dir: str | None = None, root: str = DEFAULT_ROOT) -> None:
        self.root = os.path.realpath(root)
        self.base_dir = os.path.realpath(base_dir or f"/var/tmp/pymw-condor-{os.getpid()}")
        self.shared_dir = os.path.join(self.base_dir, "shared")
        self.condor_config = os.path.join(self.base_dir, "condor_config")
        self._proc: subprocess.Popen[bytes] | None = None
        self._python: str | None = None
        self._python_error = "pool not started"

    def start(self, timeout: float = 120) -> None:
        """Build (cached), clean up leftovers, mount, launch; return once a slot and the schedd
        are in the collector. The build itself is not counted in ``timeout``."""
        if reason := missing_requirements(self.root):
            raise RuntimeError(reason)
        ensure_chroot(self.root)
        self.stop()  # also reaps what a crashed run (any process) left in the chroot
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(COLLECTOR) == 0:
                raise RuntimeError("127.0.0.1:9618 is already in use by a process outside "
                                   f"{self.root}: another HTCondor collector?")
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
            shutil.rmtree(f"{r}/{d}", ignore_errors=True)  # fresh queue, fresh logs
        # Normally systemd-tmpfiles' job, which the chroot lacks.
        _run(["chroot", r, "sh", "-c", "mkdir -p /run/condor /run/lock/condor /var/spool/condor"
              " /var/lib/condor/execute /var/log/condor && chown condor:condor /run/condor"
              " /run/lock/condor /var/spool/condor /var/lib/condor /var/lib/condor/execute"
              " /var/log/condor"], env=CHROOT_ENV)
        os.makedirs(self.shared_dir, exist_ok=True)
        os.chmod(self.shared_dir, 0o1777)
        with open(self.condor_config, "w") as f:
            f.write(CLIENT_CONFIG)
        _run(["mount", "-t", "proc", "proc", f"{r}/proc"])
        _run(["mount", "--bind", "/dev", f"{r}/dev"])
        _run(["mount", "--bind", self.shared_dir, _mkdirs_in(r, self.shared_dir)])
        self._python = None
        try:
            exe, prefix = _python_tree()
        except RuntimeError as exc:  # the pool still works; python_for_jobs() says why not
            self._python_error = str(exc)
        else:
            os.chmod(f"{r}/root", 0o755)  # the chroot's /root, never the host's
            target = _mkdirs_in(r, prefix)
            _run(["mount", "--bind", prefix, target])
            _run(["mount", "-o", "remount,bind,ro", target])
            self._python = exe
        with open(os.path.join(self.base_dir, "master.out"), "wb") as out:
            # start_new_session = setsid(2): the daemons form a group killed at once at stop
            self._proc = subprocess.Popen(
                ["chroot", r, "/usr/sbin/condor_master", "-f"], stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, env=CHROOT_ENV, start_new_session=True)

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        want = {"Machine", "Scheduler", "Negotiator"}
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"condor_master exited with {self._proc.returncode}")
            q = subprocess.run(["chroot", self.root, "condor_status", "-any", "-af", "MyType"],
                               capture_output=True, text=True, env=CHROOT_ENV, timeout=30)
            if want <= set(q.stdout.split()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out; collector has {sorted(set(q.stdout.split()))}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Kill the daemons (TERM, then KILL), then unmount all under the chroot. Idempotent;
        also cleans up after a killed master or a crashed earlier test process."""
        if (proc := self._proc) is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)  # fast shutdown: jobs are killed at once
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            self._proc = None
        _kill_rooted(self.root)
        _unmount_all(self.root)
        try:
            os.rmdir(self.root + self.shared_dir)  # leave no stray mount point behind
        except OSError:
            pass

    def python_for_jobs(self) -> str:
        """Absolute path of the host's base interpreter, as seen inside the chroot too."""
        if self._python is None:
            raise RuntimeError(self._python_error)
        return self._python

    def make_job_dir(self, name: str) -> str:
        """A directory under ``shared_dir`` that the job owner (uid 1000) can write."""
        path = os.path.join(self.shared_dir, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o777)
        return path

    def log_tail(self, lines: int = 30) -> str:
        """The end of master.out and of the daemons' logs, for error messages."""
        out = []
        for p in (os.path.join(self.base_dir, "master.out"),
                  *(f"{self.root}/var/log/condor/{n}" for n in ("MasterLog", "SchedLog",
                                                               "StartLog"))):
            try:
                with open(p, errors="replace") as f:
                    out.append(f"--- {p}\n" + "".join(f.readlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(out)

    def __enter__(self) -> CondorPool:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _smoke(n: int = 3) -> None:
    """Start a pool, run ``n`` trivial host-Python jobs, print timings, stop."""
    t0 = time.monotonic()
    ensure_chroot()
    t1 = time.monotonic()
    with CondorPool() as pool:
        t2 = time.monotonic()
        os.environ["CONDOR_CONFIG"] = pool.condor_config
        import htcondor2

        htcondor2.reload_config()
        jobdir = pool.make_job_dir("smoke")
        log = os.path.join(jobdir, "jobs.log")
        open(log, "w").close()
        os.chmod(log, 0o666)
        sub = htcondor2.Submit({
            "executable": pool.python_for_jobs(), "arguments": "\"-c 'print(42)'\"",
            "transfer_executable": "False", "initialdir": jobdir, "log": log,
            "output": "out.$(ProcId)", "error": "err.$(ProcId)"})
        t3 = time.monotonic()
        htcondor2.Schedd().submit(sub, count=n)
        done, events = 0, htcondor2.JobEventLog(log)
        while done < n and time.monotonic() - t3 < 120:
            for ev in events.events(stop_after=1):
                if ev.type in (htcondor2.JobEventType.JOB_HELD,
                               htcondor2.JobEventType.JOB_ABORTED):
                    raise RuntimeError(f"job {ev.proc}: {ev}")
                done += ev.type == htcondor2.JobEventType.JOB_TERMINATED
        t4 = time.monotonic()
        outs = [open(os.path.join(jobdir, f"out.{i}")).read().strip() for i in range(n)]
        if done < n or outs != ["42"] * n:
            raise RuntimeError(f"{done}/{n} jobs done, outputs {outs}")
    t5 = time.monotonic()
    print(f"chroot ready {t1 - t0:.1f} s, start {t2 - t1:.1f} s, {n} jobs {t4 - t3:.1f} s, "
          f"stop {t5 - t4:.1f} s; outputs {outs}")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) == 2 else ""
    if cmd == "build":
        t = time.monotonic()
        print(ensure_chroot(), f"ready in {time.monotonic() - t:.1f} s")
    elif cmd == "smoke":
        _smoke()
    else:
        sys.exit("usage: pool.py build|smoke")
