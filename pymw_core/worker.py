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
import importlib.abc
import importlib.util
import io
import os
import pickle
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
    from pymw_core import wire
    from pymw_core.errors import TaskError
except ImportError:  # pragma: no cover - only when run as a loose file
    import wire  # type: ignore[no-redef]
    from errors import TaskError  # type: ignore[no-redef]

import cloudpickle


def worker_info() -> dict:
    """What the master needs to know about this worker before sending it work."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return {
        "python": tuple(sys.version_info[:3]),
        "pid": os.getpid(),
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


def _dumps(value: Any) -> bytes:
    """Plain pickle first (fast); cloudpickle for what only it can carry."""
    try:
        return pickle.dumps(value, wire.PROTOCOL)
    except Exception:
        return cloudpickle.dumps(value, wire.PROTOCOL)


class Runtime:
    """Runs tasks one after another, caching functions and scripts between them."""

    def __init__(self, scratch: str | None = None, chdir: bool = True) -> None:
        """``chdir=False`` is for runtimes inside another program (threads): the process's
        working directory is left alone, so data files are not in the task's cwd."""
        self._own_scratch = scratch is None
        self._chdir = chdir
        self.scratch = scratch or tempfile.mkdtemp(prefix="pymw-worker-")
        if chdir:
            os.chdir(self.scratch)
        # Function blobs by id, in the master's least-recently-used order (see wire.py),
        # and the functions unpickled from them. A blob that fails to unpickle stays,
        # so each later task of that function reports the same real error.
        self._blobs: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._functions: collections.OrderedDict[int, Callable] = collections.OrderedDict()
        self._scripts: collections.OrderedDict[tuple[str, int], types.CodeType] = (
            collections.OrderedDict())
        self._modules = _ShippedModules()
        sys.meta_path.insert(0, self._modules)
        self.workdir: str | None = None  # the running task's data-file directory, if any

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
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        workdir = None
        start = time.perf_counter()
        try:
            sys.stdout, sys.stderr = out, err
            deps = ()
            if extras:
                workdir = self._apply(extras)
                if extras.get("deps"):
                    deps = pickle.loads(extras["deps"])
            if code[0] == "f":
                fn = self._function(code)
                _inject(getattr(fn, "__globals__", None), deps)
                args = pickle.loads(args_blob) if args_blob else ()
                kwargs = pickle.loads(extras["kwargs"]) if extras and "kwargs" in extras else {}
                result = fn(*args, **kwargs)
            else:
                result = self._script(code, pickle.loads(args_blob), deps)
            ok = True
        except Exception as exc:  # the task's own failure is its answer
            ok = False
            result = exc
            tb = traceback.format_exc()
        except BaseException as exc:  # SystemExit and friends must not end the master's program
            ok = False
            result = TaskError(f"the task raised {type(exc).__name__}{exc.args!r}")
            tb = traceback.format_exc()
        finally:
            sys.stdout, sys.stderr = saved
            if workdir is not None:
                if self._chdir:
                    os.chdir(self.scratch)
                shutil.rmtree(workdir, ignore_errors=True)
                self.workdir = None
        seconds = time.perf_counter() - start
        if ok:
            try:
                blob = _dumps(result)
            except Exception as exc:
                ok = False
                result = TaskError(
                    f"the task's result ({type(result).__qualname__}) could not be pickled: {exc}"
                )
                tb = traceback.format_exc()
        if not ok:
            blob = _pack_error(result, tb)
        return ("done", task_id, ok, blob, out.getvalue(), err.getvalue(), seconds)

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

    def _script(self, code: tuple, input_data: Any, deps: Any) -> Any:
        _, name, source = code
        key = (name, hash(source))
        compiled = self._scripts.get(key)
        if compiled is None:
            compiled = self._scripts[key] = compile(source, name, "exec")
            if len(self._scripts) > wire.FUNCTION_CACHE:
                self._scripts.popitem(last=False)
        box: list = [None]

        def pymw_get_input() -> Any:
            return input_data

        def pymw_return_output(value: Any) -> None:
            box[0] = value

        app = types.ModuleType("pymw_app")  # PyMW 0.x scripts may `from pymw_app import *`
        app.__dict__.update(pymw_get_input=pymw_get_input, pymw_return_output=pymw_return_output)
        sys.modules["pymw_app"] = app
        namespace = {
            "__name__": "__main__",
            "__file__": name,
            "__builtins__": builtins,
            "pymw_get_input": pymw_get_input,
            "pymw_return_output": pymw_return_output,
        }
        _inject(namespace, deps)
        saved_argv = sys.argv
        sys.argv = [name]
        try:
            exec(compiled, namespace)
        except SystemExit as stop:
            if stop.code not in (None, 0):
                raise
        finally:
            sys.argv = saved_argv
        return box[0]


def _inject(namespace: dict | None, deps: Any) -> None:
    if namespace is None:
        return
    for dep in deps or ():
        namespace.setdefault(dep.__name__, dep)


def _pack_error(exc: BaseException, tb: str) -> bytes:
    try:
        return _dumps((exc, tb))
    except Exception:
        stand_in = TaskError(
            f"{type(exc).__qualname__}: {exc} (the exception could not be pickled)"
        )
        return pickle.dumps((stand_in, tb), wire.PROTOCOL)


class _Server:
    """A streaming worker: a reader thread queues frames, the main thread runs tasks.

    ``cancel`` is decided under one lock with the main thread's choice of what to run
    next, so a cancel can only ever stop the attempt it names: dropped if still queued,
    the process ended (after a ``stopping`` frame) if it runs, ignored if it is done.
    """

    STOP_EXIT = 75  # exit status of a worker that stopped a task on request

    def __init__(self, inp: BinaryIO, out: BinaryIO, runtime: Runtime) -> None:
        self._inp = inp
        self._out = out
        self._runtime = runtime
        self._state = threading.Lock()
        self._write = threading.Lock()
        self._ready = threading.Condition(self._state)
        self._queue: collections.deque[tuple | None] = collections.deque()
        self._running: int | None = None
        self._cancelled: dict[int, None] = {}  # ids to drop when they come up (bounded)

    def send(self, message: tuple) -> None:
        with self._write:
            wire.write_message(self._out, message)

    def serve(self) -> None:
        self.send(("hello", worker_info()))
        threading.Thread(target=self._read, name="pymw-worker-read", daemon=True).start()
        runtime = self._runtime
        while True:
            with self._state:
                while not self._queue:
                    self._ready.wait()
                message = self._queue.popleft()
                if message is None:
                    return
                attempt_id = message[1]
                dropped = attempt_id in self._cancelled
                if dropped:
                    del self._cancelled[attempt_id]
                else:
                    self._running = attempt_id
            if dropped:
                self.send(("dropped", attempt_id))
                continue
            reply = runtime.run(message, accepted=True)
            with self._state:
                self._running = None
            self.send(reply)

    def _read(self) -> None:
        try:
            while True:
                message = wire.read_message(self._inp)
                if message is None or message[0] == "bye":
                    break
                if message[0] == "cancel":
                    self._cancel(message[1])
                    continue
                message = self._runtime.accept(message)
                with self._state:
                    self._queue.append(message)
                    self._ready.notify()
        except Exception:  # a broken stream ends the worker like EOF
            traceback.print_exc()
        with self._state:
            self._queue.append(None)
            self._ready.notify()

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


def serve(inp: BinaryIO, out: BinaryIO, scratch: str | None = None) -> None:
    """Answer ``task`` frames from ``inp`` on ``out`` until EOF or ``bye``."""
    runtime = Runtime(scratch)
    try:
        _Server(inp, out, runtime).serve()
    finally:
        runtime.close()


def run_file(in_path: str, out_path: str, watch_parent: bool = False) -> None:
    """Run the single task stored in ``in_path`` (a ``need`` frame, then a ``task`` frame).

    The task runs in the current directory (its data files in a ``task-*`` directory
    made there and removed after). ``watch_parent``: if the process that started this
    one ends first, stop at once, removing what this run made (the task's directory,
    a half-written reply) and writing no reply: see :func:`_exit_when_orphaned`.
    """
    runtime: list[Runtime] = []
    if watch_parent:
        def tidy() -> None:
            for made in [r.workdir for r in runtime if r.workdir]:
                shutil.rmtree(made, ignore_errors=True)
            try:
                os.remove(out_path + ".part")
            except OSError:
                pass

        _exit_when_orphaned(None, tidy=tidy)
    with open(in_path, "rb") as inp:
        need = wire.read_message(inp)
        have = tuple(sys.version_info[:2])
        if tuple(need[1]) != have:
            reply = _version_refusal(need[1], have)
        else:
            message = wire.read_message(inp)
            runtime.append(Runtime(scratch=os.getcwd()))
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


ORPHAN_EXIT = 3  # exit status of a worker whose parent ended first


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
started it ends first.
"""


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``python -m pymw_core.worker`` and the uploaded zip."""
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
    faulthandler.enable()  # a crash leaves a Python traceback on stderr for the master
    # The frames own the real stdin/stdout; stray writes to fd 1 (C code, child
    # processes) go to stderr instead of corrupting them.
    inp = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    out = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    _exit_when_orphaned(scratch)
    serve(inp, out, scratch)


if __name__ == "__main__":
    main()
