"""What runs on a remote host besides the workers: the probe, the uploads, the clean-up.

Layout on the host, under ``remote_dir`` (default ``~/.cache/pymw``; mode 0700 when PyMW
makes it, left as it is when it exists)::

    pymw-runtime-<hash>.zip      the worker runtime: uploaded once, kept, shared by runs
    runs/<run>/                  one master's connection to this host; removed by close()
    runs/<run>/pids              its workers' process ids (how a later run tells it is dead)
    runs/<run>/w<N>/             one worker's scratch directory
    runs/<run>/files/<sha256>    data files, uploaded once per content

The probe is a script that any Python parses (2.7 included), so a wrong interpreter is
refused with both versions named instead of a syntax error; it also sweeps the run
directories that crashed masters left behind (no process of theirs alive).
Every word given to the remote shell is quoted with :func:`shlex.quote`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import shlex
import socket
import sys
import time
import uuid

import paramiko

from pymw_ssh.connect import HostError

_PROBE = r"""
import errno, json, os, shutil, signal, sys, time

def cpus():
    try:
        return len(os.sched_getaffinity(0))
    except Exception:
        pass
    try:
        import multiprocessing
        return multiprocessing.cpu_count()
    except Exception:
        return 1

def alive(pid, marker):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as fh:
            return marker.encode('utf-8') in fh.read()
    except (IOError, OSError):
        return not os.path.isdir('/proc')

def pids_of(run):
    try:
        with open(os.path.join(run, 'pids')) as fh:
            return [int(word) for word in fh.read().split()]
    except (IOError, OSError, ValueError):
        return None

def sweep(runs, keep):
    for name in os.listdir(runs):
        path = os.path.join(runs, name)
        if path == keep or not os.path.isdir(path):
            continue
        pids = pids_of(path)
        if pids is None:
            try:
                if time.time() - os.stat(path).st_mtime < 3600:
                    continue  # still starting, perhaps
            except OSError:
                continue
        elif [pid for pid in pids if alive(pid, path)]:
            continue
        shutil.rmtree(path, True)

def makedirs(path):
    try:
        os.makedirs(path, 448)
    except OSError as exc:
        if exc.errno != errno.EEXIST or not os.path.isdir(path):
            raise

def probe(root, run, runtime):
    root = os.path.abspath(os.path.expanduser(root))
    runs = os.path.join(root, 'runs')
    run = os.path.join(runs, run)
    # Each level is made private if PyMW makes it; a directory that exists keeps the
    # mode its owner chose (a shared one stays shared).
    for path in (root, runs, run, os.path.join(run, 'files')):
        makedirs(path)
    try:
        sweep(runs, run)
    except OSError:
        pass
    sys.stdout.write('PYMW-PROBE ' + json.dumps({
        'python': list(sys.version_info[:3]), 'executable': sys.executable,
        'cpus': cpus(), 'root': root, 'run': run,
        'cached': os.path.isfile(os.path.join(root, runtime)),
    }) + '\n')

def stop(run, pids):
    mine = [pid for pid in pids if alive(pid, run)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in mine:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + 2
        while time.time() < deadline:
            mine = [pid for pid in mine if alive(pid, run)]
            if not mine:
                break
            time.sleep(0.05)
        if not mine:
            break
    return mine

if sys.argv[1] == 'probe':
    probe(sys.argv[2], sys.argv[3], sys.argv[4])
else:
    left = stop(sys.argv[2], [int(word) for word in sys.argv[3:]])
    if sys.argv[1] == 'clean':
        shutil.rmtree(sys.argv[2], True)
    sys.stdout.write('PYMW-STOPPED %d\n' % len(left))
"""


def python_words(python: str | list[str] | tuple[str, ...]) -> list[str]:
    """The remote interpreter as words: ``"python3"``, ``"/opt/py/bin/python -I"``, a list."""
    words = shlex.split(python) if isinstance(python, str) else [str(w) for w in python]
    if not words or not all(words):
        raise ValueError(f"python must name an interpreter, not {python!r}")
    return words


def command(words: list[str]) -> str:
    """A shell command line in which every word is quoted."""
    return " ".join(shlex.quote(word) for word in words)


def new_run_id() -> str:
    """A name for this master's directory on a host, unique across masters and machines."""
    local = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())
    return f"{local[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def run_command(transport: paramiko.Transport, line: str, timeout: float) -> tuple[int, str, str]:
    """Run ``line`` on a fresh channel; ``(exit status, stdout, stderr)`` within ``timeout``."""
    channel = transport.open_session(timeout=timeout)
    try:
        channel.settimeout(timeout)
        channel.exec_command(line)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while not (channel.exit_status_ready() and not channel.recv_ready()
                   and not channel.recv_stderr_ready()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer within {timeout} s")
            if channel.recv_stderr_ready():
                err += channel.recv_stderr(1 << 16)
            elif channel.recv_ready():
                out += channel.recv(1 << 16)
            else:
                channel.status_event.wait(0.01)
        return channel.recv_exit_status(), out.decode(errors="replace"), err.decode(
            errors="replace"
        )
    finally:
        channel.close()


def probe(transport: paramiko.Transport, name: str, python: list[str], root: str, run: str,
          runtime: str, timeout: float) -> dict:
    """Check the remote interpreter and prepare the run's directories; raise HostError."""
    line = command([*python, "-c", _PROBE, "probe", root, run, runtime])
    try:
        status, out, err = run_command(transport, line, timeout)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise HostError(f"host {name}: probing the remote Python failed: "
                        f"{type(exc).__name__}: {exc}") from exc
    want = ".".join(map(str, sys.version_info[:2]))
    shown = command(python)
    if status == 127:
        raise HostError(
            f"host {name}: the remote interpreter {shown} was not found (exit status 127: "
            f"{err.strip() or 'command not found'}); set python= to a Python {want} on that host",
            permanent=True,
        )
    found = [row for row in out.splitlines() if row.startswith("PYMW-PROBE ")]
    if status != 0 or not found:
        raise HostError(
            f"host {name}: probing the remote interpreter {shown} failed (exit status {status}): "
            f"{(err or out).strip()[-2000:] or 'no output'}",
            permanent=status not in (-1,),
        )
    info = json.loads(found[-1][len("PYMW-PROBE "):])
    have = tuple(info["python"])
    if have[:2] != tuple(sys.version_info[:2]):
        raise HostError(
            f"host {name}: the remote interpreter {shown} ({info['executable']}) is Python "
            f"{'.'.join(map(str, have))} but the master runs Python "
            f"{'.'.join(map(str, sys.version_info[:3]))}: the minor versions must match; set "
            f"python= to a Python {want} on that host",
            permanent=True,
        )
    return info


def upload(sftp: paramiko.SFTPClient, data: bytes | str, path: str, mode: int = 0o600) -> None:
    """Put ``data`` (bytes, or a local file's path) at ``path`` atomically: a temporary name, then
    a rename, so a concurrent reader never sees half a file."""
    temporary = f"{path}.part-{uuid.uuid4().hex[:8]}"
    try:
        if isinstance(data, bytes):
            sftp.putfo(io.BytesIO(data), temporary, file_size=len(data), confirm=True)
        else:
            with open(data, "rb") as fh:
                sftp.putfo(fh, temporary, confirm=True)
        sftp.chmod(temporary, mode)
        try:
            sftp.posix_rename(temporary, path)
        except OSError:
            sftp.rename(temporary, path)
    except BaseException:
        try:
            sftp.remove(temporary)
        except (OSError, paramiko.SSHException):
            pass
        raise


def ensure_runtime(sftp: paramiko.SFTPClient, root: str, runtime: tuple[str, bytes],
                   cached: bool) -> str:
    """The remote path of the runtime zip, uploading it if the host lacks this version."""
    name, data = runtime
    path = posixpath.join(root, name)
    if cached:
        try:
            if sftp.stat(path).st_size == len(data):
                return path
        except OSError:
            pass
    upload(sftp, data, path, 0o644)
    return path


def write_pids(sftp: paramiko.SFTPClient, run: str, pids: list[int]) -> None:
    """Record the run's worker pids, so a later probe can tell when the run is dead."""
    with sftp.open(posixpath.join(run, "pids.part"), "w") as fh:
        fh.write(" ".join(map(str, pids)) + "\n")
    sftp.posix_rename(posixpath.join(run, "pids.part"), posixpath.join(run, "pids"))


def worker_command(python: list[str], runtime: str, scratch: str) -> str:
    """Start one worker with ``exec``: no shell stays between sshd and it, so when the
    connection goes the worker is re-parented and its orphan watchdog ends it."""
    return (
        f"mkdir -p {shlex.quote(scratch)} && cd {shlex.quote(scratch)} && "
        f"exec {command([*python, runtime, '--scratch', scratch])}"
    )


def stop_workers(transport: paramiko.Transport, python: list[str], run: str, pids: list[int],
                 timeout: float, remove: bool) -> None:
    """Kill this run's workers among ``pids`` (checked by their command line, so a pid
    reused by another process is left alone); with ``remove``, delete the run's directory."""
    line = command([*python, "-c", _PROBE, "clean" if remove else "stop", run, *map(str, pids)])
    status, out, err = run_command(transport, line, timeout)
    if status != 0:
        raise OSError(f"exited with status {status}: {(err or out).strip()[-500:]}")


_digests: dict[tuple[str, int, int], str] = {}


def known_digest(path: str) -> str | None:
    """The content hash of ``path`` if it was computed for the file as it is now."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _digests.get((path, stat.st_size, stat.st_mtime_ns))


def file_digest(path: str) -> str:
    """The content hash naming a data file on the hosts (memoised by path, size and mtime)."""
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    digest = _digests.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
        digest = _digests[key] = sha.hexdigest()
    return digest
