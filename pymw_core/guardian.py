"""A worker's process structure: the guardian, and the end of a task's process tree.

The process an interface starts (``python -m pymw_core.worker``) forks at once: the
parent becomes the *guardian*, which runs no task code and has no threads, so nothing
a task does (C code holding the GIL for minutes, a fork pool holding the pipes) can
stop it from acting. The child is the worker that runs tasks.

- The guardian and the worker are both child subreapers (Linux ``prctl``): whatever a
  task starts, even what double-forks or calls ``setsid``, stays their descendant.
- The worker dies with the guardian (``PR_SET_PDEATHSIG``: SIGKILL).
- The guardian ends everything (SIGKILL to every descendant, until none is left) and
  exits when: the worker exits (its exit status is passed on as the guardian's own),
  the master dies (its end of the worker's stdin closes, or the guardian's parent
  ends: the parent-death signal), or it is asked to (SIGTERM, SIGINT).
- After each task the worker ends what the task left running
  (:func:`end_children`), so processes never outlive the task that started them.

All of this is Linux; elsewhere :func:`start` returns without a guardian and the worker
falls back to a thread that watches its parent.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
ORPHAN_EXIT = 3  # exit status of a worker whose master (its parent) ended first
STOP_EXIT = 75  # exit status of a worker that stopped a task on request
EOF_GRACE = 1.0  # seconds a worker has to leave by itself once its input ended
_LOOK_AGAIN = 1.0  # seconds between the guardian's looks at its worker without a signal

_prctl: Callable[..., int] | None = None


def supported() -> bool:
    """Whether this system gives what the guardian needs (Linux's prctl)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and _libc_prctl() is not None


def _libc_prctl() -> Callable[..., int] | None:
    global _prctl
    if _prctl is None:
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError, ImportError):
            return None
    return _prctl


def prctl(option: int, value: int) -> bool:
    """``prctl(option, value)``; False if the system refused (or has no prctl)."""
    call = _libc_prctl()
    return call is not None and call(option, value, 0, 0, 0) == 0


def become_subreaper() -> bool:
    """Orphans among this process's descendants are reparented here, not to init."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1)


def start(on_orphaned: Callable[[], None], watch_stdin: bool,
          last_words: Callable[[], bytes] | None = None) -> bool:
    """Fork the guardian: returns True in the worker (the child); the guardian never returns.

    ``on_orphaned`` runs in the guardian when the master died, after the process tree
    ended (it removes what the worker made). ``watch_stdin``: the master's end of fd 0
    closing means the master is gone (a pipe from the master, an SSH channel).
    """
    parent, guardian = os.getppid(), os.getpid()
    become_subreaper()
    # The worker's pipes are the worker's alone: the guardian keeps only fd 0 to watch.
    read_wake, write_wake = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_wake)
        os.close(write_wake)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != guardian:  # pragma: no cover - it died before the prctl
            os._exit(ORPHAN_EXIT)
        return True
    try:
        _guard(pid, parent, read_wake, write_wake, on_orphaned, watch_stdin, last_words)
    finally:  # pragma: no cover - _guard exits; this is for a bug in it
        _end_tree(pid)
        os._exit(1)
    return False  # pragma: no cover


def _guard(worker: int, parent: int, read_wake: int, write_wake: int,
           on_orphaned: Callable[[], None], watch_stdin: bool,
           last_words: Callable[[], bytes] | None) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)  # the channel to the master is the worker's only
    os.close(null)
    os.set_blocking(write_wake, False)
    signal.set_wakeup_fd(write_wake)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _nothing)
    # A parent's death (the master, sshd's session, a batch job's script) signals us.
    # On Linux that fires when the parent *thread* ends too, so getppid() decides.
    prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    poller = select.poll()
    poller.register(read_wake, select.POLLIN)
    if watch_stdin:
        poller.register(0, 0)  # no events asked: POLLHUP/POLLERR come anyway
    # The worker may have ended before the handlers above were in place (a quick task on
    # a loaded machine): that SIGCHLD was discarded, so look once now, and again on every
    # wake-up (a poll never waits more than _LOOK_AGAIN s), never waiting for a signal alone.
    status: int | None = _reap(worker)
    orphaned = os.getppid() != parent
    hung_up: float | None = None  # when fd 0's writer went: the worker may still leave itself
    while status is None and not orphaned:
        timeout = _LOOK_AGAIN if hung_up is None else \
            min(_LOOK_AGAIN, max(0, hung_up + EOF_GRACE - time.monotonic()))
        try:
            ready = poller.poll(timeout * 1000)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        received: set[int] = set()
        for fd, events in ready:
            if fd == read_wake:
                received.update(os.read(read_wake, 64))
            elif events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                hung_up = time.monotonic()
                poller.unregister(fd)
                # The parent gone too: the master died. Else (the parent may be an
                # sshd session that outlives its channel) the input ended on purpose or
                # the transport broke: the worker leaves by itself, or after EOF_GRACE.
                orphaned = os.getppid() != parent
        status = _reap(worker)
        if received & {signal.SIGTERM, signal.SIGINT}:
            _end_tree(worker)
            os.kill(os.getpid(), signal.SIGKILL)  # reads as before: "killed by SIGKILL"
        if os.getppid() != parent:  # a SIGHUP, or a parent that died before the prctl
            orphaned = True
        if status is None and hung_up is not None and time.monotonic() >= hung_up + EOF_GRACE:
            orphaned = True  # the worker is busy (maybe in C code): it will not see the end
    _end_tree(worker if status is None else None)
    if status is None or hung_up is not None:  # the master is gone (or done): tidy up
        try:
            on_orphaned()
        finally:
            if status is None:
                os._exit(ORPHAN_EXIT)
    crashed = os.WIFSIGNALED(status) or os.waitstatus_to_exitcode(status) not in (0, STOP_EXIT)
    if crashed and last_words is not None:
        _say(last_words())
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the worker dumped its own
        except (ImportError, ValueError, OSError):
            pass
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP have no handler to reset
            pass
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _say(words: bytes) -> None:
    if words:
        try:
            os.write(2, words if words.endswith(b"\n") else words + b"\n")
        except OSError:
            pass


def _nothing(signum: int, frame: object) -> None:
    """Signals only wake the poll (set_wakeup_fd); the loop decides."""


def _reap(worker: int) -> int | None:
    """Collect ended children; the worker's wait status if it is among them."""
    status = None
    while True:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == worker:
            status = code


def children() -> list[int]:
    """This process's children, from every thread's ``/proc`` list (Linux)."""
    found: list[int] = []
    base = "/proc/self/task"
    try:
        threads = os.listdir(base)
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"{base}/{tid}/children", "rb") as fh:
                found += [int(pid) for pid in fh.read().split()]
        except (OSError, ValueError):
            pass
    return found


def end_children(rounds: int = 1000) -> int:
    """SIGKILL every descendant of this process (a subreaper), until none is left.

    Killed children's own children are reparented here (we are a subreaper), so each
    round finds the next generation, however it forked. Returns how many were ended.
    """
    ended = 0
    for _ in range(rounds):
        found = children()
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in found:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # reaped by the task's own Popen meanwhile
                pass
            except OSError:
                pass
        ended += len(found)
    return ended


def _end_tree(worker: int | None) -> None:
    if worker is not None:
        try:
            os.kill(worker, signal.SIGKILL)
        except OSError:
            pass
    end_children()
