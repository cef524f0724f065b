"""The worker runtime: the one place that knows how a task runs.

Every interface runs tasks through this module; interfaces only move its frames
(see :mod:`pymw_core.wire`). It needs only the standard library and cloudpickle,
so it also runs from the self-contained zip that remote interfaces upload
(:mod:`pymw_core.bundle`).

Two ways to run it::

    python -m pymw_core.worker                 # serve frames on stdin/stdout until EOF
    python -m pymw_core.worker --file IN OUT   # run the one task in file IN, reply into OUT
"""

from __future__ import annotations

import builtins
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
        self._functions: dict[int, Callable] = {}
        self._scripts: dict[tuple[str, int], types.CodeType] = {}
        self._modules = _ShippedModules()
        sys.meta_path.insert(0, self._modules)

    def close(self) -> None:
        """Remove the scratch directory this runtime made."""
        if self._modules in sys.meta_path:
            sys.meta_path.remove(self._modules)
        if self._own_scratch:
            if self._chdir:
                os.chdir(tempfile.gettempdir())
            shutil.rmtree(self.scratch, ignore_errors=True)

    def run(self, message: tuple) -> tuple:
        """Run one ``task`` message and return its ``done`` reply; the task's faults never raise."""
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
                result = fn(*args)
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
        if blob is not None:
            self._functions[fn_id] = pickle.loads(blob)
        try:
            return self._functions[fn_id]
        except KeyError:
            raise TaskError(f"worker has no function #{fn_id}: the master never sent it") from None

    def _apply(self, extras: dict) -> str | None:
        for name, source, is_pkg in extras.get("modules", ()):
            self._modules.add(name, source, is_pkg)
        files = extras.get("files")
        if not files:
            return None
        workdir = tempfile.mkdtemp(prefix="task-", dir=self.scratch)
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


def serve(inp: BinaryIO, out: BinaryIO, scratch: str | None = None) -> None:
    """Answer ``task`` frames from ``inp`` on ``out`` until EOF or ``bye``."""
    runtime = Runtime(scratch)
    try:
        wire.write_message(out, ("hello", worker_info()))
        while True:
            message = wire.read_message(inp)
            if message is None or message[0] == "bye":
                return
            wire.write_message(out, runtime.run(message))
    finally:
        runtime.close()


def run_file(in_path: str, out_path: str) -> None:
    """Run the single task stored in ``in_path`` (a ``need`` frame, then a ``task`` frame)."""
    with open(in_path, "rb") as inp:
        need = wire.read_message(inp)
        have = tuple(sys.version_info[:2])
        if tuple(need[1]) != have:
            reply = _version_refusal(need[1], have)
        else:
            message = wire.read_message(inp)
            runtime = Runtime(scratch=os.getcwd())
            reply = runtime.run(message)
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


def _exit_when_orphaned(interval: float = 0.5) -> None:
    """Stop when the parent (the master, or sshd) goes away, even mid-task."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="pymw-orphan-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``python -m pymw_core.worker`` and the uploaded zip."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--file"]:
        run_file(argv[1], argv[2])
        return
    scratch = argv[1] if argv[:1] == ["--scratch"] else None
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
    _exit_when_orphaned()
    serve(inp, out, scratch)


if __name__ == "__main__":
    main()
