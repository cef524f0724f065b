"""The program each element of PyMW's job arrays runs: a worker that claims task files.

Copied into the run directory and run on the node as::

    PYTHON pymw-element.py RUN_DIR GROUP RUNTIME_ZIP IDLE_TIMEOUT TIME_LIMIT

Standard library only, plus the worker runtime imported from RUNTIME_ZIP; nothing of
PyMW needs to be installed on the node. The interface imports this module too, for
:func:`parse_duration`. The files it uses, all relative to RUN_DIR:

``tasks/GROUP/KEY-NEED.task``
    a queued request. NEED is the whole seconds of walltime the task needs (its
    ``timeout``, or the interface's ``walltime_margin``).
``claimed/KEY@JOB``
    the same request, renamed here (atomically) by the element that runs it.
``replies/KEY@JOB``
    the worker runtime's reply (``done`` frame), written beside and renamed.
``lost/KEY@JOB``
    the task's process ended without a reply; first line ``task`` (the reason follows)
    or ``job`` (the whole job was signalled: ask Slurm why).
``cancel/KEY``
    written by the master: kill the task's process.
``hosts/JOB``
    the node the element runs on, written as it starts: task errors name it.
``ended/JOB``
    the element ended: its reason, then ``ran=N limit=SECONDS`` (tasks it ran, its
    walltime as it saw it, empty if unlimited).

The claim rule: a task is claimed only while the element's remaining walltime
(its start on the node plus TIME_LIMIT seconds; with TIME_LIMIT 0, Slurm's time
left from one ``squeue`` call at start) exceeds the task's NEED. Tasks that are
queued but need more than is left make the element end at once, so that the master
submits a fresh one for them.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

_INFINITE = {"", "UNLIMITED", "INFINITE", "NOT_SET", "N/A", "NONE"}
_CHECK_CANCEL = 0.2  # seconds between looks for the master's cancel marker


def parse_duration(text: str) -> float | None:
    """Seconds in a Slurm time (``--time``, squeue's ``%L``/``%l``); None for unlimited.

    Slurm's forms: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``.
    ValueError for anything else.
    """
    text = text.strip()
    if text.upper() in _INFINITE:
        return None
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        days = int(head)
        parts = [int(p) for p in text.split(":")]
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"not a Slurm time: {text!r}")
        parts += [0] * (3 - len(parts))
        hours, minutes, seconds = parts
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, (minutes, seconds) = 0, parts
        elif len(parts) == 3:
            hours, minutes, seconds = parts
        else:
            raise ValueError(f"not a Slurm time: {text!r}")
    if min(days, hours, minutes, seconds) < 0:
        raise ValueError(f"not a Slurm time: {text!r}")
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


class _Terminated(Exception):
    """Slurm (or someone) sent the element SIGTERM: walltime, scancel, preemption."""


def _on_sigterm(signum, frame):
    raise _Terminated()


class Element:
    """One array element: claims, runs and answers tasks of one group until idle."""

    def __init__(self, run_dir: str, group: str, idle_timeout: float, time_limit: float,
                 run_file, runtime: str, wire) -> None:
        self.run_dir = run_dir
        self.queue = os.path.join(run_dir, "tasks", group)
        self.idle_timeout = idle_timeout
        self.run_file = run_file
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        index = os.environ.get("SLURM_ARRAY_TASK_ID")
        self.job = f"{array}_{index}" if array and index else os.environ.get(
            "SLURM_JOB_ID", f"pid{os.getpid()}")
        self.host = socket.gethostname()
        started = time.monotonic()
        left = time_limit if time_limit > 0 else _time_left()
        self.end = started + left if left is not None else float("inf")
        self.scratch = tempfile.mkdtemp(prefix=f"pymw-slurm-{self.job}-")
        self.wire = wire
        self.worker = Worker(runtime, self.scratch, wire)
        self.key = ""
        self.ran = 0
        self.limit = left

    def path(self, *names: str) -> str:
        return os.path.join(self.run_dir, *names)

    def run(self) -> str:
        """Serve until idle or out of walltime; the reason it ended."""
        last = time.monotonic()
        pause = 0.01
        while True:
            found = self.claim()
            if found is None:
                if time.monotonic() - last > self.idle_timeout:
                    return f"idle for {self.idle_timeout:g} s"
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
            elif found == "":
                return "too little walltime left for the queued tasks"
            else:
                self.execute(found)
                self.ran += 1
                last = time.monotonic()
                pause = 0.01

    def claim(self) -> str | None:
        """A claimed key; None when nothing is queued; "" when nothing queued fits."""
        try:
            names = os.listdir(self.queue)
        except FileNotFoundError:
            return None
        queued = []
        for name in names:
            if not name.endswith(".task") or name.startswith("."):
                continue
            key, _, need = name[:-5].partition("-")
            try:
                queued.append((int(key), int(need), name))
            except ValueError:
                continue
        if not queued:
            return None
        left = self.end - time.monotonic()
        fits = False
        for key, need, name in sorted(queued):
            if need >= left:
                continue
            fits = True
            try:
                os.rename(os.path.join(self.queue, name), self.path("claimed", f"{key}@{self.job}"))
            except FileNotFoundError:
                continue  # another element was first
            return str(key)
        return None if fits else ""

    def execute(self, key: str) -> None:
        """Run one claimed task on the element's worker runtime; report a death without a
        reply. A request for another Python gets the runtime's refusal in words."""
        self.key = key
        name = f"{key}@{self.job}"
        claimed, reply = self.path("claimed", name), self.path("replies", name)
        cancel = self.path("cancel", key)
        with open(claimed, "rb") as fh:
            need = self.wire.read_message(fh)
            task = self.wire.read_message(fh)
        if tuple(need[1]) != tuple(sys.version_info[:2]):
            self.run_file(claimed, reply)  # writes the refusal; runs nothing
        else:
            how = self.worker.run(task, reply, lambda: os.path.exists(cancel))
            if how == "cancelled":  # by the master: nothing to report
                _unlink(cancel)
            elif how:
                self.report_lost(f"task\nthe task's process in Slurm job {self.job} on "
                                 f"{self.host} {how} without a result")
        _unlink(claimed)
        self.key = ""

    def report_lost(self, text: str) -> None:
        _write(self.path("lost", f"{self.key}@{self.job}"), text)

    def terminated(self) -> None:
        """SIGTERM: stop the task, say the job was signalled, leave."""
        self.worker.stop()
        if self.key and not os.path.exists(self.path("replies", f"{self.key}@{self.job}")):
            self.report_lost(f"job\nSlurm job {self.job} on {self.host} was sent SIGTERM")


class Worker:
    """The element's worker runtime: ``python RUNTIME_ZIP --scratch DIR``, as ``local``
    starts its workers, fed the claimed tasks over its pipes. Started again after a
    task that ended it (a cancel, a crash); between tasks it ends what a task left
    running, and its guardian ends the lot should the element die.

    One process for all of an element's tasks: a fork per task cost about 5 ms a task
    (13 ms before the runtime's imports were preloaded); this costs about 0.2 ms.
    """

    def __init__(self, runtime: str, scratch: str, wire) -> None:
        self.runtime, self.scratch, self.wire = runtime, scratch, wire
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        folder = tempfile.mkdtemp(prefix="worker-", dir=self.scratch)
        # Unbuffered output: select() on its descriptor then says all there is to read.
        self.proc = subprocess.Popen([sys.executable, self.runtime, "--scratch", folder],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        hello = self.wire.read_message(self.proc.stdout)
        if not (isinstance(hello, tuple) and hello[0] == "hello"):
            raise RuntimeError(f"the worker runtime did not start: {hello!r}")

    def run(self, task: tuple, reply: str, cancelled) -> str:
        """Run ``task``, writing its ``done`` frame to ``reply``: "" when it did,
        "cancelled" when ``cancelled()`` came first, else how the worker ended."""
        if self.proc is None:
            self.start()
        proc = self.proc
        try:
            proc.stdin.write(self.wire.encode(task))
        except BrokenPipeError:
            return self._ended()
        out = proc.stdout.fileno()
        while True:
            if select.select([out], [], [], _CHECK_CANCEL)[0]:
                message = self.wire.read_message(proc.stdout)
                if message is None:
                    return self._ended()
                if message[0] == "done" and message[1] == task[1]:
                    _write(reply, self.wire.encode(message))
                    return ""
            elif cancelled():
                self.stop()
                return "cancelled"

    def _ended(self) -> str:
        code = self.proc.wait()
        self.proc = None
        if code < 0:
            how = f"was killed by signal {-code}"
            if -code == signal.SIGKILL:
                how += " (out of memory?)"
            return how
        return f"exited with status {code}"

    def stop(self) -> None:
        """End the worker and what its task started (its guardian does, on SIGTERM)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """The element is done: the worker leaves after ``bye``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.write(self.wire.encode(("bye",)))
            proc.stdin.close()
            proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


def _time_left() -> float | None:
    """Slurm's time left for this job (one squeue call), or None if unknown or unlimited."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True,
                             text=True, timeout=30).stdout
        return parse_duration(out.strip().splitlines()[0])
    except Exception:
        return None


def _kill(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
            return
        except OSError:
            continue


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write(path: str, data: str | bytes) -> None:
    head, tail = os.path.split(path)
    part = os.path.join(head, f".{tail}.part")
    with open(part, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
    os.replace(part, path)


def main(argv: list[str]) -> int:
    run_dir, group, runtime, idle, limit = argv
    signal.signal(signal.SIGTERM, _on_sigterm)
    element = None
    why = "did not start"
    try:
        sys.path.insert(0, runtime)
        from pymw_core import wire
        from pymw_core.worker import run_file

        element = Element(run_dir, group, float(idle), float(limit), run_file, runtime, wire)
        try:
            _write(element.path("hosts", element.job), element.host)
        except OSError:
            pass  # only error messages would miss it
        why = element.run()
    except _Terminated:
        why = "SIGTERM"
        if element is not None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            element.terminated()
    finally:
        if element is not None:
            element.worker.close()
            limit = "" if element.limit is None else f"{element.limit:g}"
            _write(os.path.join(run_dir, "ended", element.job),
                   f"{why}\nran={element.ran} limit={limit}\n")
            import shutil

            shutil.rmtree(element.scratch, ignore_errors=True)
    print(f"pymw element ended: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
