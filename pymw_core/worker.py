"""The worker runtime: the one place that knows how a task runs.

Every interface runs tasks through this module; interfaces only move its frames
(see :mod:`pymw_core.wire`). It needs only the standard library and cloudpickle,
so it also runs from the self-contained zip that remote interfaces upload
(:mod:`pymw_core.bundle`).

Two ways to run it::

    python -m pymw_core.worker [--scratch DIR]  # serve frames on stdin/stdout until EOF
    python -m pymw_core.worker --file IN OUT    # run the one task in file IN, reply into OUT

Serving, a reader thread takes frames as they come (so the master never waits on a
busy worker's pipe) and acts on ``cancel`` at once; the main thread runs the tasks.
"""

from __future__ import annotations

import builtins
import collections
import faulthandler
import importlib
import importlib.abc
import importlib.util
import os
import pickle
import queue
import re
import select
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
import types
from collections.abc import Callable
from typing import Any, BinaryIO

try:  # run from an uploaded zip, pymw_core's __init__ is a stub: import siblings by name
    from pymw_core import capture as _capture
    from pymw_core import guardian, wire
    from pymw_core.errors import TaskError
except ImportError:  # pragma: no cover - only when run as a loose file
    import capture as _capture  # type: ignore[no-redef]
    import guardian  # type: ignore[no-redef]
    import wire  # type: ignore[no-redef]
    from errors import TaskError  # type: ignore[no-redef]

import cloudpickle

# A PyMW 0.4 script names its input and output files as sys.argv[1] and sys.argv[2].
_ARGV_FILES = re.compile(r"argv\s*\[\s*[12]\s*\]")
_PROGRESS_INTERVAL = 0.1  # seconds between progress frames of one task, unless it moved a lot
_guardian_pid: int | None = None  # set in a worker forked by its guardian (see main)

def worker_info() -> dict:
    """What the master needs to know about this worker before sending it work."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return {
        "python": tuple(sys.version_info[:3]),
        "pid": os.getpid(),  # the process that runs the tasks
        "guardian": _guardian_pid,  # the process the interface started, if not this one
        "cpus": cpus,
        "host": socket.gethostname(),
        "executable": sys.executable,
    }


class _ShippedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes module sources sent with tasks importable by name."""

    def __init__(self) -> None:
        self.sources: dict[str, tuple[str, bool]] = {}

    def add(self, name: str, source: str, is_pkg: bool) -> None:
        if self.sources.get(name) != (source, is_pkg):
            self.sources[name] = (source, is_pkg)
            sys.modules.pop(name, None)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.sources:
            return None
        is_pkg = self.sources[fullname][1]
        spec = importlib.util.spec_from_loader(
            fullname, self, origin=f"<pymw shipped {fullname}>", is_package=is_pkg
        )
        if is_pkg and spec is not None:
            spec.submodule_search_locations = []
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        source = self.sources[module.__name__][0]
        origin = f"<pymw shipped {module.__name__}>"
        module.__file__ = origin
        exec(compile(source, origin, "exec"), module.__dict__)


def _dumps(value: Any) -> bytes | tuple:
    """Plain pickle first (fast, big bytes beside it: wire.dumps); cloudpickle for what
    only it can carry."""
    try:
        return wire.dumps(value)
    except Exception:
        return cloudpickle.dumps(value, wire.PROTOCOL)


class Runtime:
    """Runs tasks one after another, caching functions and scripts between them."""

    def __init__(self, scratch: str | None = None, chdir: bool = True,
                 own_process: bool | None = None,
                 capture: _capture.FdCapture | None = None) -> None:
        """``chdir=False`` is for runtimes inside another program (threads): the process's
        working directory is left alone, so data files are not in the task's cwd.

        ``own_process`` (default: ``chdir``): this runtime owns the process, so a task's
        output is captured at fds 1 and 2 (:mod:`pymw_core.capture`) and the processes a
        task leaves running are ended when it ends (:func:`guardian.end_children`).
        Otherwise what the task's thread writes to ``sys.stdout``/``sys.stderr`` is
        captured, so tasks may run at once on threads of one process. ``capture``:
        the files made before the guardian forked (see :func:`main`).
        """
        self._own_scratch = scratch is None
        self._chdir = chdir
        self.scratch = scratch or tempfile.mkdtemp(prefix="pymw-worker-")
        if chdir:
            os.chdir(self.scratch)
        if own_process is None:
            own_process = chdir
        if own_process:
            if capture is None:
                capture = _capture.FdCapture(self.scratch)
            capture.install()
        self._capture = capture if own_process else None
        # A subreaper catches what a task's processes double-fork, so that ending this
        # process's children after a task ends all of them.
        self._sweep = own_process and guardian.supported() and guardian.become_subreaper()
        # Function blobs by id, in the master's least-recently-used order (see wire.py),
        # and the functions unpickled from them. A blob that fails to unpickle stays,
        # so each later task of that function reports the same real error.
        self._blobs: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._functions: collections.OrderedDict[int, Callable] = collections.OrderedDict()
        # Compiled scripts, each with whether it takes PyMW 0.4's argv convention.
        self._scripts: collections.OrderedDict[tuple[str, int], tuple[types.CodeType, bool]] = (
            collections.OrderedDict())
        self._modules = _ShippedModules()
        sys.meta_path.insert(0, self._modules)
        # Set by a serving loop: sends a frame to the master (progress reports).
        self.report: Callable[[tuple], None] | None = None
        self._current: int | None = None  # the attempt running now
        self._progress_sent = (0.0, 0.0)  # (when, ratio) of the last progress frame
        self.workdir: str | None = None  # the running task's data-file directory, if any

    def own_stderr(self) -> Any:
        """The worker's own stderr (not a task's), when output is captured at fds 1 and 2."""
        return self._capture.own_stderr if self._capture is not None else None

    def close(self) -> None:
        """Remove the scratch directory this runtime made."""
        if self._modules in sys.meta_path:
            sys.meta_path.remove(self._modules)
        if self._own_scratch:
            if self._chdir:
                os.chdir(tempfile.gettempdir())
            shutil.rmtree(self.scratch, ignore_errors=True)

    def accept(self, message: tuple) -> tuple:
        """Take a ``task`` frame as it arrives: the function's blob, sent or cached, goes
        into the message. Call once per frame, in the order the master sent them."""
        code = message[2]
        if code[0] != "f":
            return message
        fn_id, blob = code[1], code[2]
        blobs = self._blobs
        if blob is not None:
            blobs[fn_id] = blob
            blobs.move_to_end(fn_id)
            if len(blobs) > wire.FUNCTION_CACHE:
                blobs.popitem(last=False)
            return message
        blob = blobs.get(fn_id)
        if blob is None:
            return message  # run() reports it: the master and this worker disagree
        blobs.move_to_end(fn_id)
        return (*message[:2], ("f", fn_id, blob), *message[3:])

    def run(self, message: tuple, accepted: bool = False) -> tuple:
        """Run one ``task`` message and return its ``done`` reply; the task's faults never raise.

        ``accepted``: :meth:`accept` already took it (a serving loop's reader did).
        """
        if not accepted:
            message = self.accept(message)
        _, task_id, code, args_blob, extras = message
        capture = self._capture
        workdir = None
        start = called = time.perf_counter()  # called: when the task's own code began
        self._current, self._progress_sent = task_id, (0.0, 0.0)
        try:
            if capture is None:
                routed = _capture.begin_thread_capture()
            else:
                capture.begin()
            deps = ()
            # Names a task finds without importing them: PyMW 0.4's worker scripts began
            # with an import of each module in modules=, and offered pymw_set_progress.
            given: dict[str, Any] = {"pymw_set_progress": self.set_progress}
            if extras:
                workdir = self._apply(extras)
                given.update(_import_by_name(extras.get("imports", ())))
                if extras.get("deps"):
                    deps = pickle.loads(extras["deps"])
            if code[0] == "f":
                fn = self._function(code)
                _inject(getattr(fn, "__globals__", None), deps, given)
                args = wire.loads(args_blob) if args_blob else ()
                kwargs = pickle.loads(extras["kwargs"]) if extras and "kwargs" in extras else {}
                called = time.perf_counter()
                result = fn(*args, **kwargs)
            else:
                input_data = wire.loads(args_blob)
                called = time.perf_counter()
                result = self._script(code, input_data, deps, given)
            ok = True
        except Exception as exc:  # the task's own failure is its answer
            ok = False
            result = exc
            tb = _format_traceback(exc)
        except BaseException as exc:  # SystemExit and friends must not end the master's program
            ok = False
            result = TaskError(f"the task raised {_type_name(exc)}{_safe_text(repr, exc.args)}")
            tb = _format_traceback(exc)
        finally:
            self._current = None
            now = time.perf_counter()
            seconds, ran = now - start, now - called
            if capture is None:
                out_text, err_text = _capture.end_thread_capture(routed)
            else:
                if ran > _SWEEP_AFTER:  # code this quick cannot have started a process
                    if self._sweep:
                        guardian.end_children()
                    capture.repair()
                out_text, err_text = capture.end()
            if workdir is not None:
                if self._chdir:
                    os.chdir(self.scratch)
                shutil.rmtree(workdir, ignore_errors=True)
                self.workdir = None
        if ok:
            try:
                blob = _dumps(result)
            except BaseException as exc:
                ok = False
                result = TaskError(
                    f"the task's result ({_type_name(result)}) could not be pickled: "
                    f"{_safe_text(str, exc)}"
                )
                tb = _format_traceback(exc)
        if not ok:
            blob = _pack_error(result, tb)
        return ("done", task_id, ok, blob, out_text, err_text, seconds)

    def set_progress(self, ratio: float) -> None:
        """``pymw_set_progress(ratio)`` in a task: tell the master how far it got (0 to 1).

        Sent only when serving a stream (a batch job's task has no one to tell), and at
        most every ``_PROGRESS_INTERVAL`` seconds unless it moved by a tenth or more.
        """
        value = float(ratio)  # a task passing nonsense learns it here, in its own traceback
        task_id, report = self._current, self.report
        if task_id is None or report is None:
            return
        now = time.monotonic()
        when, last = self._progress_sent
        if now - when < _PROGRESS_INTERVAL and abs(value - last) < 0.1:
            return
        self._progress_sent = (now, value)
        report(("progress", task_id, value))

    def _function(self, code: tuple) -> Callable:
        _, fn_id, blob = code
        functions = self._functions
        fn = functions.get(fn_id)
        if fn is not None:
            functions.move_to_end(fn_id)
            return fn
        if blob is None:
            raise TaskError(f"worker has no function #{fn_id}: the master never sent it")
        fn = functions[fn_id] = pickle.loads(blob)
        if len(functions) > wire.FUNCTION_CACHE:
            functions.popitem(last=False)
        return fn

    def _apply(self, extras: dict) -> str | None:
        for name, source, is_pkg in extras.get("modules", ()):
            self._modules.add(name, source, is_pkg)
        files = extras.get("files")
        if not files:
            return None
        workdir = self.workdir = tempfile.mkdtemp(prefix="task-", dir=self.scratch)
        for name, path in files:
            shutil.copyfile(path, os.path.join(workdir, name))
        if self._chdir:
            os.chdir(workdir)
        return workdir

    def _script(self, code: tuple, input_data: Any, deps: Any, given: dict[str, Any]) -> Any:
        """Run a script as ``__main__``, by either generation's convention.

        PyMW 0.1-0.3 scripts call ``pymw_get_input()`` and ``pymw_return_output(value)``.
        PyMW 0.4's generic interface ran a script as ``python script IN OUT``: it unpickles
        its input from ``sys.argv[1]`` and pickles ``[result, stdout, stderr]`` into
        ``sys.argv[2]``. A script that indexes ``argv[1]`` or ``argv[2]`` and calls neither
        function gets the 0.4 convention (any other script was run with ``argv`` holding
        its name alone, so none that worked before changes); the stdout/stderr strings
        it writes are added to the captured output.
        """
        _, name, source = code
        key = (name, hash(source))
        cached = self._scripts.get(key)
        if cached is None:
            argv_style = bool(_ARGV_FILES.search(source)) and not any(
                word in source for word in ("pymw_get_input", "pymw_return_output"))
            cached = self._scripts[key] = (compile(source, name, "exec"), argv_style)
            if len(self._scripts) > wire.FUNCTION_CACHE:
                self._scripts.popitem(last=False)
        compiled, argv_style = cached
        box: list = [None]

        def pymw_get_input() -> Any:
            return input_data

        def pymw_return_output(value: Any) -> None:
            box[0] = value

        app = types.ModuleType("pymw_app")  # PyMW 0.x scripts may `from pymw_app import *`
        app.__dict__.update(pymw_get_input=pymw_get_input, pymw_return_output=pymw_return_output,
                            pymw_set_progress=self.set_progress)
        sys.modules["pymw_app"] = app
        namespace = {
            "__name__": "__main__",
            "__file__": name,
            "__builtins__": builtins,
            "pymw_get_input": pymw_get_input,
            "pymw_return_output": pymw_return_output,
        }
        _inject(namespace, deps, given)
        saved_argv = sys.argv
        sys.argv = [name]
        io_dir = None
        try:
            if argv_style:
                io_dir = tempfile.mkdtemp(prefix="io-", dir=self.scratch)
                in_path, out_path = os.path.join(io_dir, "in.dat"), os.path.join(io_dir, "out.dat")
                with open(in_path, "wb") as fh:
                    pickle.dump(input_data, fh)
                sys.argv = [name, in_path, out_path]
            try:
                exec(compiled, namespace)
            except SystemExit as stop:
                if stop.code not in (None, 0):
                    raise
            if argv_style:
                return _argv_result(name, out_path)
        finally:
            sys.argv = saved_argv
            if io_dir is not None:
                shutil.rmtree(io_dir, ignore_errors=True)
        return box[0]


def _argv_result(name: str, out_path: str) -> Any:
    """The result a PyMW 0.4 script pickled into ``sys.argv[2]`` as [result, stdout, stderr]."""
    try:
        with open(out_path, "rb") as fh:
            written = pickle.load(fh)
    except FileNotFoundError:
        raise TaskError(
            f"the script {name} wrote no result: PyMW 0.4 scripts pickle "
            "[result, stdout, stderr] into the file named by sys.argv[2]"
        ) from None
    if not isinstance(written, (list, tuple)) or len(written) != 3:
        raise TaskError(
            f"the script {name} wrote {type(written).__name__} into sys.argv[2], not "
            "[result, stdout, stderr]"
        )
    result, out, err = written
    if isinstance(out, str):
        sys.stdout.write(out)
    if isinstance(err, str):
        sys.stderr.write(err)
    return result


def _import_by_name(names: Any) -> dict[str, types.ModuleType]:
    """Import the modules a task names in ``modules=`` (shipped ones are found among the
    shipped sources); their top-level names, as ``import a.b`` would bind them."""
    bound = {}
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f"module {name!r} (in modules=) cannot be imported on this worker: {exc}"
            ) from exc
        top = name.partition(".")[0]
        bound[top] = sys.modules[top]
    return bound


def _inject(namespace: dict | None, deps: Any, given: dict[str, Any] | None = None) -> None:
    """Bind ``dep_funcs`` and the given names in a task's globals (and in each dependency's
    own): what the task's module already defines wins."""
    if namespace is None:
        return
    for dep in deps or ():
        namespace.setdefault(dep.__name__, dep)
    for name, value in (given or {}).items():
        namespace.setdefault(name, value)
    for dep in deps or ():
        globs = getattr(dep, "__globals__", None)
        if globs is not None and globs is not namespace:
            for name, value in (given or {}).items():
                globs.setdefault(name, value)


def _pack_error(exc: BaseException, tb: str) -> bytes:
    """The exception and its traceback text, as the master will unpickle them.

    An exception that cannot be pickled, or whose pickle cannot be loaded again (a
    ``__reduce__`` or ``__init__`` that raises), travels as a :class:`TaskError` holding
    its type name and message instead: a task's exception never ends the worker.
    """
    try:
        blob = _dumps((exc, tb))
        pickle.loads(blob)  # only errors pay for the check: the master must load it too
        return blob
    except BaseException as why:
        stand_in = TaskError(
            f"{_type_name(exc)}: {_safe_text(str, exc)} (the exception could not be pickled "
            f"for the master: {_type_name(why)}: {_safe_text(str, why)})"
        )
        return pickle.dumps((stand_in, tb), wire.PROTOCOL)


def _type_name(value: Any) -> str:
    try:
        return str(type(value).__qualname__)
    except BaseException:
        return "<unnamed type>"


def _safe_text(render: Callable[[Any], str], value: Any) -> str:
    """``str()``/``repr()`` of a task's object, which may itself raise."""
    try:
        return str(render(value))
    except BaseException as why:
        return f"<{render.__name__}() of the object failed: {_type_name(why)}>"


def _format_traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException as why:
        return (f"{_type_name(exc)} (its traceback could not be formatted: "
                f"{_type_name(why)})\n")


# Seconds: a task's code quicker than this cannot have started a process (a fork of a
# Python process, or a spawn, takes 80 µs or more), so it is not checked for leftovers.
_SWEEP_AFTER = 50e-6
_REPLY_BATCH = 64  # replies that may wait for one flush
_QUICK_SECONDS = 0.0005  # a function this fast may run before the replies ahead are flushed
_DURATIONS_KEPT = 4 * wire.FUNCTION_CACHE


class _Server:
    """A streaming worker: the main thread reads frames and runs tasks; a watcher thread
    takes over the reading while a task runs long, so that a ``cancel`` is acted on at
    once and the master can keep sending (the worker reads ahead).

    Tiny tasks never pay for the second thread: the main thread reads the next frame
    itself whenever the watcher is not reading. ``cancel`` is decided under one lock
    with the main thread's choice of what to run next, so a cancel can only ever stop
    the attempt it names: dropped if still queued, the process ended (after a
    ``stopping`` frame) if it runs, ignored if it is done.
    """

    STOP_EXIT = 75  # exit status of a worker that stopped a task on request

    def __init__(self, inp: Any, out: BinaryIO, runtime: Runtime) -> None:
        self._inp = inp
        self._out = out
        self._runtime = runtime
        self._state = threading.Lock()
        self._write = threading.Lock()
        self._reading = threading.Lock()  # the right to read the stream, one thread at a time
        # Frames the watcher read ahead: a C-level queue, the cheapest hand-over.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._started = threading.Event()  # a task began: the watcher looks at it
        self._running: int | None = None
        self._cancelled: dict[int, None] = {}  # ids to drop when they come up (bounded)
        self.said_bye = False  # the master ended the stream with "bye" (not just EOF)
        self._durations: dict[int, float] = {}  # function id -> its last run, in seconds
        self._unflushed = 0  # replies written but not yet flushed
        runtime.report = self.send  # progress frames go out beside the replies

    def send(self, message: tuple) -> None:
        with self._write:
            wire.write_message(self._out, message)
            self._unflushed = 0

    def serve(self) -> None:
        self.send(("hello", worker_info()))
        threading.Thread(target=self._watch, name="pymw-worker-watch", daemon=True).start()
        runtime = self._runtime
        while True:
            message = self._next()
            if message is None:
                break
            with self._state:  # decided with the reader's cancels: see _cancel
                attempt_id = message[1]
                dropped = attempt_id in self._cancelled
                if dropped:
                    del self._cancelled[attempt_id]
                else:
                    self._running = attempt_id
            if dropped:
                self.send(("dropped", attempt_id))
                continue
            if self._unflushed and not self._quick(message):
                self._flush()  # what is done leaves before something that may take long
            if not self._quick(message):  # may run long: the watcher looks at it soon
                self._started.set()
            reply = runtime.run(message, accepted=True)
            self._remember(message, reply[6])  # the run's own measure of its seconds
            with self._state:
                self._running = None
            # Replies of tiny tasks queued back to back leave together: one write (and on
            # ssh one packet) for many. _next flushes before it could wait for the master.
            with self._write:
                wire.write_message(self._out, reply, flush=False)
                self._unflushed += 1
                if self._unflushed >= _REPLY_BATCH:
                    self._out.flush()
                    self._unflushed = 0
        self._flush()

    def _next(self) -> tuple | None:
        """The next task frame (None at the end): read ahead by the watcher, else read here.

        Before it may wait for the master, what is written goes out (replies held back
        for a batch must never wait for a frame that only their delivery brings).
        """
        queued = self._queue
        while True:
            if not queued.empty():
                item = queued.get()
            elif self._reading.acquire(blocking=False):
                try:
                    if self._unflushed and not _waiting(self._inp):
                        self._flush()
                    item = self._take(wire.read_message(self._inp))
                finally:
                    self._reading.release()
            else:
                self._flush()
                item = queued.get()  # the watcher is reading: its next frame
            if item is _NOTHING or item is _ROLE_FREE:
                continue
            return item

    def _take(self, message: Any) -> Any:
        """What a frame read from the stream means here: a task (accepted), None at the
        end, or _NOTHING for a cancel (acted on at once)."""
        if message is None or message[0] == "bye":
            self.said_bye = message is not None
            return None
        if message[0] == "cancel":
            self._cancel(message[1])
            return _NOTHING
        return self._runtime.accept(message)

    def _flush(self) -> None:
        if self._unflushed:
            with self._write:
                self._out.flush()
                self._unflushed = 0

    def _quick(self, message: tuple) -> bool:
        """Whether the task's function ran in well under a millisecond last time."""
        code = message[2]
        return code[0] == "f" and self._durations.get(code[1], 1.0) < _QUICK_SECONDS

    def _remember(self, message: tuple, seconds: float) -> None:
        code = message[2]
        if code[0] == "f":
            durations = self._durations
            durations[code[1]] = seconds
            if len(durations) > _DURATIONS_KEPT:
                del durations[next(iter(durations))]

    def _watch(self) -> None:
        """Read while a task runs long; give the reading back after.

        A task not known to be quick signals its start: the watcher reads once it ran
        _WATCH_AFTER. A quick one signals nothing (the second thread then costs nothing
        per task); should it run long after all, the watcher's poll every _WATCH_POLL
        seconds finds it still running and reads from then on.
        """
        seen: int | None = None
        while True:
            signalled = self._started.wait(_WATCH_POLL)
            self._started.clear()
            watched = self._running
            if watched is None:
                seen = None
                continue
            if signalled:
                time.sleep(_WATCH_AFTER)
            elif watched != seen:  # first seen by the poll: look again at the next one
                seen = watched
                continue
            if self._running != watched or not self._reading.acquire(blocking=False):
                continue
            try:
                while True:
                    try:
                        item = self._take(wire.read_message(self._inp))
                    except Exception:  # a broken stream ends the worker like EOF
                        traceback.print_exc()
                        item = None
                    if item is not _NOTHING:
                        self._queue.put(item)
                    if item is None:
                        return
                    if self._running is None:  # the main thread is between tasks: its turn
                        break
            finally:
                self._reading.release()
            self._queue.put(_ROLE_FREE)  # wakes a main thread that waits for our frames

    def _cancel(self, attempt_id: int) -> None:
        with self._state:
            if self._running == attempt_id:
                # Holding the state lock, the main thread cannot finish and reply for it.
                try:
                    self.send(("stopping", attempt_id))
                finally:
                    os._exit(self.STOP_EXIT)
            self._cancelled[attempt_id] = None
            if len(self._cancelled) > 10_000:  # ids of attempts that ended before the cancel
                del self._cancelled[next(iter(self._cancelled))]


def _waiting(stream: Any) -> bool:
    """Whether bytes wait in the pipe under ``stream``: the next frame is on its way, so
    the replies written so far may wait for it (a false answer only costs a flush)."""
    try:
        return bool(select.select([stream.fileno()], [], [], 0)[0])
    except (OSError, ValueError, AttributeError):
        return False


_NOTHING = object()  # no frame yet (or a cancel, already handled)
_ROLE_FREE = object()  # the watcher stopped reading: the main thread reads again
_WATCH_AFTER = 0.002  # seconds a task runs before the watcher reads (and acts on cancels)
_WATCH_POLL = 0.05  # how often the watcher looks for a quick task that turned out long


def serve(inp: Any, out: BinaryIO, scratch: str | None = None) -> None:
    """Answer ``task`` frames from ``inp`` on ``out`` until EOF or ``bye``.

    A stream that ends without ``bye`` means the master is gone (a killed master closes
    its pipes before this process is re-parented, so the orphan watch may not see it
    first): the scratch directory it gave goes, as the orphan watch would remove it.
    """
    runtime = Runtime(scratch)
    server = _Server(inp, out, runtime)
    try:
        server.serve()
    finally:
        runtime.close()
        if scratch and not server.said_bye:
            os.chdir("/")
            shutil.rmtree(scratch, ignore_errors=True)


def run_file(in_path: str, out_path: str, watch_parent: bool = False) -> None:
    """Run the single task stored in ``in_path`` (a ``need`` frame, then a ``task`` frame).

    The task runs in the current directory (its data files in a ``task-*`` directory
    made there and removed after). ``watch_parent``: if the process that started this
    one ends first, stop at once, removing what this run made (the task's directory,
    a half-written reply) and writing no reply. On Linux a guardian process does that
    (:mod:`pymw_core.guardian`), whatever the task is doing; elsewhere a thread.
    """
    runtime: list[Runtime] = []
    capture = None
    if watch_parent:
        here = os.getcwd()
        before = set(os.listdir(here))

        def tidy() -> None:
            made = [r.workdir for r in runtime if r.workdir]
            made += [os.path.join(here, name) for name in os.listdir(here)
                     if name.startswith("task-") and name not in before]
            for path in made:
                shutil.rmtree(path, ignore_errors=True)
            try:
                os.remove(out_path + ".part")
            except OSError:
                pass

        if guardian.supported():
            capture = _capture.FdCapture(os.getcwd())
            guardian.start(tidy, watch_stdin=False, last_words=capture.tail)
        else:
            _exit_when_orphaned(None, tidy=tidy)
    with open(in_path, "rb") as inp:
        need = wire.read_message(inp)
        have = tuple(sys.version_info[:2])
        if tuple(need[1]) != have:
            reply = _version_refusal(need[1], have)
        else:
            message = wire.read_message(inp)
            runtime.append(Runtime(scratch=os.getcwd(), capture=capture))
            reply = runtime[0].run(message)
    tmp = out_path + ".part"
    with open(tmp, "wb") as out:
        wire.write_message(out, reply)
    os.replace(tmp, out_path)


def _version_refusal(need: tuple, have: tuple) -> tuple:
    error = TaskError(
        f"worker Python {have[0]}.{have[1]} ({sys.executable}) cannot run tasks from a master "
        f"on Python {need[0]}.{need[1]}: the minor versions must match"
    )
    return ("done", None, False, pickle.dumps((error, ""), 2), "", "", 0.0)


ORPHAN_EXIT = guardian.ORPHAN_EXIT  # exit status of a worker whose parent ended first


def _exit_when_orphaned(scratch: str | None, interval: float = 0.5,
                        tidy: Callable[[], None] | None = None) -> None:
    """Stop when the parent (the master, sshd, a batch job's starter) goes away, even mid-task.

    A master that was killed cleans up nothing: the scratch directory it gave this
    worker (or, with ``--file``, what ``tidy`` removes) goes here, on the way out.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os.chdir("/")
                if scratch:
                    shutil.rmtree(scratch, ignore_errors=True)
                if tidy is not None:
                    tidy()
                os._exit(ORPHAN_EXIT)

    threading.Thread(target=watch, name="pymw-orphan-watch", daemon=True).start()


USAGE = """usage: python -m pymw_core.worker [--scratch DIR]
       python -m pymw_core.worker --file IN OUT

PyMW's worker runtime. Interfaces start it; people rarely need to.
  (no arguments)   serve task frames on stdin, replies on stdout, until EOF
  --scratch DIR    ... with DIR as the working directory for tasks (default: a temp dir)
  --file IN OUT    run the one task stored in IN, write its reply to OUT, and exit;
                   the task runs in the current directory (--scratch does not apply)

Either way the worker exits (status 3, removing what it made) if the process that
started it ends first (or, serving, when its stdin's writer closes), ending every
process its tasks started.
"""


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``python -m pymw_core.worker`` and the uploaded zip."""
    global _guardian_pid
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--file"] and len(argv) == 3:
        run_file(argv[1], argv[2], watch_parent=True)
        return
    if argv and not (argv[0] == "--scratch" and len(argv) == 2):
        sys.stderr.write(USAGE)
        raise SystemExit(0 if argv[0] in ("-h", "--help") else 2)
    if sys.stdin is not None and sys.stdin.isatty():
        sys.stderr.write(USAGE)  # a person typed it: frames on a terminal help nobody
        raise SystemExit(2)
    scratch = argv[1] if argv else None
    guarded = False
    capture = None
    made_scratch = None
    if guardian.supported():
        if scratch is None:  # made before the fork: the guardian removes it should the master die
            scratch = made_scratch = tempfile.mkdtemp(prefix="pymw-worker-")
        try:
            os.setsid()  # one session per worker: its tasks' processes are its own
        except OSError:  # already a session leader (the local interface made it one)
            pass
        made = scratch

        def tidy() -> None:
            os.chdir("/")
            shutil.rmtree(made, ignore_errors=True)

        capture = _capture.FdCapture(scratch)
        guarded = guardian.start(tidy, watch_stdin=True, last_words=capture.tail)
        _guardian_pid = os.getppid()
    # The frames own the real stdin/stdout, on descriptors of their own; fds 0, 1 and 2
    # are the task's (1 and 2 captured, see pymw_core.capture).
    inp = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    out = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    if not guarded:
        _exit_when_orphaned(scratch)
    runtime = Runtime(scratch, capture=capture)
    # A crash leaves a Python traceback on the worker's own stderr, for the master.
    faulthandler.enable(runtime.own_stderr() or sys.__stderr__)
    try:
        _Server(inp, out, runtime).serve()
    finally:
        runtime.close()
        if made_scratch is not None:
            os.chdir("/")
            shutil.rmtree(made_scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
