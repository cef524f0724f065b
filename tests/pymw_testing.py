"""The suite's own helpers: waits with deadlines, service requirements, environment
isolation, and in-process interfaces for the core's tests (real runtime, no processes)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any

import pytest

from pymw_core.unpack import deliver
from pymw_core.worker import Runtime

# -- the rules every test lives by ------------------------------------------------------

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
SESSION_MARK = "PYMW_TEST_SESSION"  # in the environment of every process the suite starts


def require(available: bool, what: str) -> None:
    """Skip when a real service is missing here; fail in CI, which must always have it.

    README.md's "Running the tests" says how to get each service.
    """
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what}: CI must provide it (scripts/run-tests installs it as root)")
    pytest.skip(f"{what}; see README.md, 'Running the tests'")


def require_module(name: str, what: str) -> Any:
    """Import ``name`` for a whole test module: skip the module here, fail it in CI."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"{what} ({exc}): CI must provide it (noxfile.py TEST_DEPS)",
                        pytrace=False)
        pytest.skip(f"{what} ({exc}); see README.md, 'Running the tests'",
                    allow_module_level=True)


def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.02, fail: bool = True) -> Any:
    """Poll ``condition`` until it returns something true, at most ``timeout`` seconds.

    Returns that value. On time-out, fails the test saying what did not happen
    (or returns the last false value with ``fail=False``).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            if fail:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            return value
        time.sleep(interval)


def read_line(stream: IO, timeout: float, what: str) -> Any:
    """One line from a child's pipe, or fail after ``timeout`` seconds saying ``what``
    did not come (``readline`` alone waits for ever on a child that hangs)."""
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True,
                              name="pymw-test-readline")
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        pytest.fail(f"timed out after {timeout} s waiting for {what}")
    return got[0]


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie has ended: it is not alive): the
    core's ``pymw_core.processes.pid_gone``, the one reading of /proc the suite uses."""
    from pymw_core.processes import pid_gone

    return not pid_gone(pid)


def session_members(sid: int) -> list[int]:
    """Live processes of session ``sid``, from /proc (zombies do not count).

    pymw_mpi.launcher has its own: the tests keep theirs, so a launcher that misreads
    /proc cannot make its own check pass.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != b"Z":
            found.append(int(entry))
    return found


def wait_dead(pids: Iterable[int], timeout: float, what: str) -> None:
    """Fail unless every process of ``pids`` has ended within ``timeout`` seconds."""
    pids = list(pids)
    wait_until(lambda: not any(alive(p) for p in pids), timeout,
               f"{what} to end (still running: {[p for p in pids if alive(p)]})")


def file_text(path: str | os.PathLike, timeout: float, what: str) -> str:
    """The stripped text of ``path`` once it exists and is not empty (a task writes it)."""
    def read() -> str:
        try:
            with open(path) as fh:
                return fh.read().strip()
        except OSError:
            return ""
    return wait_until(read, timeout, what)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without PyMW's settings (PYMW_*), plus ``extra``.

    The suite's own marker stays, so the session guard still sees what the child starts.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYMW_") or k == SESSION_MARK}
    env.update(extra)
    return env


def find_python27() -> str | None:
    """A real Python 2.7 wherever one may be: PATH, /usr/bin, /usr/local/bin, pyenv."""
    names = ("python2.7", "python2")
    candidates = [shutil.which(n) or "" for n in names]
    candidates += [os.path.join(d, n) for d in ("/usr/bin", "/usr/local/bin") for n in names]
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(pyenv, "versions", "2.7*", "bin", "python2.7")))
    candidates += sorted(glob.glob("/opt/*/bin/python2.7"))
    for path in candidates:
        if not path or not os.access(path, os.X_OK):
            continue
        try:
            out = subprocess.run([path, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue  # a pyenv shim without that version, a broken link
        if out.strip() == "(2, 7)":
            return path
    return None


def find_other_python(at_least: int = 0) -> str | None:
    """A Python 3 of another minor version than this one (pyenv's, or on PATH), if any.

    ``at_least``: its minor version's lowest (11: it runs pymw-core from this Python's
    site-packages on PYTHONPATH, whose dependencies hold no ``tomli``)."""
    import sys

    mine = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = sorted(glob.glob(os.path.join(pyenv, "versions", "3.*", "bin", "python3.*")))
    candidates += [shutil.which(f"python3.{minor}") or "" for minor in range(8, 16)]
    for path in candidates:
        name = os.path.basename(path)
        if path and os.access(path, os.X_OK) and name != mine and name.count(".") == 1 \
                and not name.endswith("-config") and "pyenv/shims" not in path \
                and name[len("python3."):].isdigit() and int(name[len("python3."):]) >= at_least:
            return path
    return None


@contextmanager
def masters(interface: str, **defaults: Any) -> Iterator[Callable[..., Any]]:
    """``make(**options)`` building Masters of ``interface`` (``defaults`` under the
    options), every one closed when the block ends: the plugins' ``make_master``."""
    from pymw_core import Master

    made: list[Any] = []

    def make(**options: Any) -> Any:
        master = Master(interface, **{**defaults, **options})
        made.append(master)
        return master

    try:
        yield make
    finally:
        for master in made:
            master.close()


def processes_marked(key: str, value: str) -> list[tuple[int, str]]:
    """(pid, command line) of every other process whose environment has ``key=value``."""
    marker = f"{key}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # a zombie has ended; its parent has yet to reap it
        except OSError:
            continue
        found.append((int(entry), cmd))
    return found


def require_installed() -> None:
    """Fail unless PyMW comes from installed wheels, not the source tree (``-e`` hides gaps)."""
    import pymw_core

    where = os.path.realpath(pymw_core.__file__)
    if f"{os.sep}site-packages{os.sep}" not in where:
        pytest.fail(f"pymw_core was imported from {where}, not from an installed wheel: "
                    "run the suite with scripts/run-tests (nox -s tests)")


# -- children that never outlive the test ------------------------------------------------

CHILD_MARGIN = 30.0  # seconds left to a test after its child's deadline: kill, report, tear down
_test_deadline: list[float | None] = [None]  # when pytest-timeout ends the running test


def set_test_deadline(seconds: float | None) -> None:
    """The running test has ``seconds`` (pytest-timeout's limit) from now; None: no limit."""
    _test_deadline[0] = None if not seconds else time.monotonic() + float(seconds)


def child_timeout(timeout: float | None) -> float:
    """``timeout``, shortened so that it ends ``CHILD_MARGIN`` s before pytest-timeout
    would end the test (and, with its thread method, the whole session)."""
    deadline = _test_deadline[0]
    left = float("inf") if deadline is None else deadline - time.monotonic() - CHILD_MARGIN
    wanted = float("inf") if timeout is None else timeout
    result = min(wanted, left)
    if result == float("inf"):
        return 600.0
    return max(result, 1.0)


def _tail(path: str, limit: int = 8000) -> str:
    with open(path, "rb") as fh:
        data = fh.read()
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else "[...]" + text[-limit:]


def run_child(argv: list[str], what: str, timeout: float | None = None, *,
              input: str | None = None,
              **options: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(argv, capture_output=True, text=True, ...)`` that cannot hang a test.

    The child runs in a process group of its own, its output goes to files (a
    grandchild holding a pipe cannot keep us waiting after the child ended), and at
    its deadline (``timeout``, always shorter than what pytest-timeout leaves the test:
    :func:`child_timeout`) the whole group is killed and the test fails naming ``what``
    and quoting what the child printed so far.
    """
    limit = child_timeout(timeout)
    with tempfile.TemporaryDirectory(prefix="child-") as folder:
        out_path, err_path = os.path.join(folder, "out"), os.path.join(folder, "err")
        in_path = os.path.join(folder, "in")
        with open(in_path, "w", encoding="utf-8") as fh:
            fh.write(input or "")
        with open(in_path, "rb") as stdin, open(out_path, "wb") as out, \
                open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err,
                                    start_new_session=True, **options)
            try:
                proc.wait(limit)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
                pytest.fail(f"{what} did not end within {limit:.0f} s (killed its process "
                            f"group); it printed:\n{_tail(out_path)}\nand on stderr:\n"
                            f"{_tail(err_path)}")
        return subprocess.CompletedProcess(argv, proc.returncode, _tail(out_path, 10**9),
                                           _tail(err_path, 10**9))


# -- deadlines on the master's blocking waits ------------------------------------------

WAIT_LIMIT = 60.0  # seconds a blocking wait of the tests' own thread may take (default)
_bounded = threading.local()  # .deadline, .what, .limit of the wait under way on this thread
_limit = [WAIT_LIMIT]  # the running test's limit (its wait_limit marker, else WAIT_LIMIT)


def set_wait_limit(seconds: float | None) -> None:
    """The limit for the running test's waits (None: ``WAIT_LIMIT``)."""
    _limit[0] = WAIT_LIMIT if seconds is None else float(seconds)


@contextmanager
def _bound(what: str) -> Iterator[None]:
    """While it runs, each wait of the master's results on this thread fails the test
    once ``what`` has waited past the limit. Only the main thread (the test's own): a
    thread the product or a test started keeps its unbounded wait."""
    if threading.current_thread() is not threading.main_thread() or \
            getattr(_bounded, "deadline", None) is not None:
        yield
        return
    _bounded.deadline = time.monotonic() + _limit[0]
    _bounded.what, _bounded.limit = what, _limit[0]
    try:
        yield
    finally:
        _bounded.deadline = None


def _bounded_wait(original: Callable[..., None]) -> Callable[..., None]:
    def _wait_locked(self: Any, timeout: float | None) -> None:
        deadline = getattr(_bounded, "deadline", None)
        if deadline is None:
            return original(self, timeout)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"{_bounded.what} did not return within {_bounded.limit:g} s "
                        "(tests/pymw_testing.py WAIT_LIMIT, or the test's wait_limit marker)")
        # A wake-up before a result is a spurious one to every caller: they loop.
        return original(self, remaining if timeout is None else min(timeout, remaining))
    return _wait_locked


@contextmanager
def bounded_master_waits() -> Iterator[None]:
    """Give the installed Master's blocking waits a deadline in this process, for the
    session: ``get_result``, ``map``'s results, ``as_completed`` and ``close(wait=True)``.

    A hang then fails its own test in seconds, naming the wait, instead of ending the
    session. What the product does is unchanged: only a wait that would outlast the
    limit is cut short, by failing the test.
    """
    from pymw_core.lifecycle import Lifecycle
    from pymw_core.master import Master

    get_result, close, as_completed = Master.get_result, Master.close, Master.as_completed

    def bounded_get_result(self: Any, task: Any = None, blocking: bool = True) -> Any:
        if not blocking:
            return get_result(self, task, blocking)
        what = "get_result() (any task)" if task is None else f"get_result({task!r})"
        with _bound(what):
            return get_result(self, task, blocking)

    def bounded_close(self: Any, wait: bool = False) -> None:
        if not wait:
            return close(self, wait)
        with _bound("close(wait=True) (the queued and running tasks to end)"):
            return close(self, wait)

    def bounded_as_completed(self: Any, tasks: Any = None, timeout: float | None = None) -> Any:
        inner = as_completed(self, tasks, timeout)

        def each() -> Iterator[Any]:
            while True:
                with _bound("as_completed(): the next task to end"):
                    try:
                        task = next(inner)
                    except StopIteration:
                        return
                yield task
        return each()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Lifecycle, "_wait_locked", _bounded_wait(Lifecycle._wait_locked))
        patch.setattr(Master, "get_result", bounded_get_result)
        patch.setattr(Master, "close", bounded_close)
        patch.setattr(Master, "as_completed", bounded_as_completed)
        yield


# -- the session's end, however it comes ------------------------------------------------


def watch_session(private: str) -> subprocess.Popen:
    """A process that outlives this one: if the session ends without ``release_watch``
    (pytest-timeout's thread method ends it with ``os._exit``; a SIGKILL), it stops every
    process the suite started (the services' daemons too) and removes ``private``."""
    import sys

    env = {k: v for k, v in os.environ.items() if k != SESSION_MARK}  # not one it kills
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--reap", private],
                            stdin=subprocess.PIPE, env=env, start_new_session=True)


def release_watch(watch: subprocess.Popen) -> None:
    """The session ended normally (its own teardown cleaned up): the watch just ends."""
    try:
        watch.stdin.write(b"done\n")  # type: ignore[union-attr]
        watch.stdin.close()  # type: ignore[union-attr]
    except OSError:
        pass
    watch.wait(timeout=30)


def _reap(private: str) -> None:
    """The watch's side: wait for the session's end; after an abrupt one, clean up."""
    import sys

    if sys.stdin.buffer.read() == b"done\n":
        return
    marked = processes_marked(SESSION_MARK, private)
    sys.stderr.write(f"pymw test session ended abruptly: stopping {len(marked)} of its "
                     f"processes, removing {private}\n")
    for signum, grace in ((15, 5.0), (9, 5.0)):
        for pid, _ in processes_marked(SESSION_MARK, private):
            try:
                os.kill(pid, signum)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while processes_marked(SESSION_MARK, private) and time.monotonic() < deadline:
            time.sleep(0.1)
    with open("/proc/mounts") as mounts:  # never remove through a mount left below it
        if any(line.split()[1].startswith(private + os.sep) for line in mounts):
            return
    shutil.rmtree(private, ignore_errors=True)


# -- in-process interfaces ---------------------------------------------------------------


class Inline:
    """Runs each task with the real worker runtime on the dispatch thread (blocking style)."""

    def __init__(self) -> None:
        self.runtime = Runtime(chdir=False)
        self.lock = threading.Lock()
        self.executed: list[tuple[Any, Any]] = []
        self.cleanups = 0

    def execute_task(self, task, worker):
        with self.lock:
            self.executed.append((task, worker))
            reply = self.runtime.run(task.payload.message(task.id))
        deliver(task, reply)

    def cleanup(self):
        self.cleanups += 1
        self.runtime.close()


class Workers(Inline):
    """Inline, with a fixed set of named workers and PyMW's optional hooks recorded."""

    def __init__(self, names=("a", "b")) -> None:
        super().__init__()
        self.free = list(names)
        self.calls: list[tuple[str, Any]] = []

    def get_available_workers(self):
        with self.lock:
            return list(self.free)

    def reserve_worker(self, worker):
        with self.lock:
            self.calls.append(("reserve", worker))
            self.free.remove(worker)

    def worker_finished(self, worker):
        with self.lock:
            self.calls.append(("finished", worker))
            self.free.append(worker)

    def get_status(self):
        return {"free": len(self.free)}


class Never:
    """Takes tasks and never finishes them: for close() and non-blocking tests."""

    def __init__(self) -> None:
        self.tasks: list[Any] = []
        self.cleanups = 0

    def execute_task(self, task, worker):
        self.tasks.append(task)

    def cleanup(self):
        self.cleanups += 1


class Held(Never):
    """Keeps every attempt it is given, on named workers; the test reports on them when
    it likes (from its own thread: concurrently with the master's)."""

    def __init__(self, names=("w1", "w2")):
        super().__init__()
        self.free = list(names)
        self.finished_workers = []
        self.stopped = []
        self.lock = threading.Lock()

    def get_available_workers(self):
        with self.lock:
            return list(self.free)

    def reserve_worker(self, worker):
        with self.lock:
            self.free.remove(worker)

    def worker_finished(self, worker):
        with self.lock:
            self.finished_workers.append(worker)
            self.free.append(worker)

    def stop_task(self, task, worker):
        self.stopped.append(task)


def running_attempt(master, task, number=1, timeout=5.0) -> Any:
    """Attempt ``number`` of ``task`` once the task runs it (waits at most ``timeout``)."""
    def current():
        attempt = task.attempt
        return attempt if attempt is not None and attempt.number == number \
            and task.state == "running" else None
    return wait_until(current, timeout, f"attempt {number} of {task} to run")


# -- tasks the batch interfaces' tests share (user code: they travel by value) -----------


def square_and_say(x):
    print(f"hello {x}")
    return x * x


def fail(text):
    import sys

    print("about to fail", file=sys.stderr)
    raise LookupError(text)


def read_data(name):
    with open(name) as fh:
        return fh.read()


def sleep_for(seconds):
    import time

    time.sleep(seconds)
    return seconds


def last_words_then_exit(status):
    """Write to the process's own stderr (fd 2, not the task's captured output), then die:
    a crash's last words, which a batch job's error must quote."""
    import os

    os.write(2, b"the job's own last words\n")
    os._exit(status)


def exit_abruptly(status):
    import os

    os._exit(status)


# -- tasks for the process tree and output capture (issue 20), shared by every interface --


def start_process_tree(path, then_seconds=0.0):
    """Start a child (``sleep``) and a process that double-forks into a session of its
    own (``setsid``, its parent gone), write both pids to ``path``, then sleep."""
    import os
    import subprocess
    import time

    child = subprocess.Popen(["sleep", "300"])
    daemon = subprocess.run(
        ["sh", "-c", "setsid sleep 301 </dev/null >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True).stdout.strip()
    with open(f"{path}.part", "w") as fh:
        fh.write(f"{child.pid} {daemon}")
    os.replace(f"{path}.part", path)
    time.sleep(then_seconds)
    return [child.pid, int(daemon)]


def tree_pids(path, timeout=60):
    """The pids :func:`start_process_tree` wrote to ``path``, once it wrote them."""
    return [int(p) for p in file_text(path, timeout, "the task to start its processes").split()]


def hold_the_gil(path):
    """Start a process tree, then hold the GIL in C code for minutes (``sum`` over a
    range never returns to the interpreter loop, so no other thread of the worker runs)."""
    start_process_tree(path)
    return sum(range(10**11))


def write_every_way():
    """Write to fds 1 and 2 every way a program can, one line each, in order."""
    import ctypes
    import os
    import subprocess
    import sys

    print("1 print")
    sys.stdout.buffer.write(b"2 buffer\n")
    os.write(sys.stdout.fileno(), b"3 fileno\n")
    subprocess.run(["echo", "4 child"], check=True)
    libc = ctypes.CDLL(None)
    libc.printf(b"5 C printf\n")  # fully buffered by C: a terminal would still show it
    sys.stdout.write("6 text\n")
    sys.stderr.write("e1 stderr\n")
    os.write(2, b"e2 fd 2\n")
    subprocess.run(["sh", "-c", "echo e3 child >&2"], check=True)
    return "written"


WRITTEN_STDOUT = "1 print\n2 buffer\n3 fileno\n4 child\n5 C printf\n6 text\n"
WRITTEN_STDERR = "e1 stderr\ne2 fd 2\ne3 child\n"


if __name__ == "__main__":  # the session's watch (watch_session)
    import sys

    if sys.argv[1:2] == ["--reap"]:
        _reap(sys.argv[2])
