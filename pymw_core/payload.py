"""Packing: turning ``submit_task``'s arguments into what a worker runtime can run.

Everything a task needs is checked and pickled here, at submit time, so bad input
fails in the user's own call with a message that says what and why. A function is
pickled once per function object; the user's own code (``__main__``, and modules that
no installed distribution owns) travels by value, installed packages by reference.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from typing import Any

import cloudpickle

from pymw_core import sources, wire
from pymw_core.errors import TaskError
from pymw_core.staging import Snapshots

_FUNCTION_CACHE_SIZE = 1024
# cloudpickle's by-value registry is process-wide: every master registers and removes
# the user's modules under this one lock, and never removes what the program registered.
_REGISTRY_LOCK = threading.Lock()
# Only these are cached by identity: their code cannot change behind the cache's back.
# A callable object (or a bound method, a partial) carries state the user may change
# between submits, so it is pickled anew each time.
_CACHEABLE = (types.FunctionType, types.BuiltinFunctionType)


@dataclass(slots=True)
class Payload:
    """A packed task. ``code`` is ``("f", fn_id, blob)`` or ``("s", name, source)``."""

    code: tuple
    args: bytes | tuple  # a tuple when big bytes travel beside the pickle (wire.dumps)
    extras: dict | None = None

    def message(
        self,
        task_id: int,
        send_code_blob: bool = True,
        file_map: Callable[[str, str], str] | None = None,
    ) -> tuple:
        """The ``task`` frame for a worker; ``task_id`` is the attempt's id.

        ``send_code_blob=False`` leaves the function out (the worker has it already).
        ``file_map(name, master_path) -> worker_path`` says where the worker finds each
        data file when it cannot read the master's paths (uploaded, or transferred).
        """
        code = self.code
        if code[0] == "f" and not send_code_blob:
            code = ("f", code[1], None)
        extras = self.extras
        if file_map is not None and extras and extras.get("files"):
            extras = dict(extras, files=[(n, file_map(n, p)) for n, p in extras["files"]])
        return ("task", task_id, code, self.args, extras)

    @property
    def data_files(self) -> list[tuple[str, str]]:
        """``(name, master_path)`` of each data file the task needs in its directory."""
        return list(self.extras.get("files", ())) if self.extras else []


class UserCode:
    """Tells the user's own modules (shipped by value) from installed ones (by reference)."""

    def __init__(self) -> None:
        self._verdicts: dict[str, bool] = {}
        self._owned: frozenset[str] | None = None
        self._seen = -1
        self._names: tuple[str, ...] = ()
        self._encoded: tuple[tuple[str, ...], tuple[bytes, ...]] = ((), ())
        self._install_dirs = tuple(
            os.path.realpath(p)
            for key in ("stdlib", "platstdlib", "purelib", "platlib")
            if (p := sysconfig.get_paths().get(key))
        )

    def _is_user(self, name: str, module: types.ModuleType) -> bool:
        top = name.partition(".")[0]
        if top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()):
            return False
        path = getattr(module, "__file__", None)
        if not path:
            return False
        if self._owned is None:
            self._owned = frozenset(packages_distributions())
        if top in self._owned:
            return False
        real = os.path.realpath(path)
        return not any(real.startswith(d + os.sep) for d in self._install_dirs)

    def names(self) -> tuple[str, ...]:
        """Names of the user's modules imported so far (``__main__`` first)."""
        if len(sys.modules) != self._seen:
            found = ["__main__"]
            for name, module in list(sys.modules.items()):
                if name == "__main__" or not isinstance(module, types.ModuleType):
                    continue
                verdict = self._verdicts.get(name)
                if verdict is None:
                    verdict = self._verdicts[name] = self._is_user(name, module)
                if verdict:
                    found.append(name)
            self._names = tuple(found)
            self._seen = len(sys.modules)
        return self._names

    def mentioned_in(self, blob: bytes) -> bool:
        """Whether a plain pickle refers to the user's code by name (so cannot load remotely)."""
        if b"\x93" not in blob:
            return False  # no STACK_GLOBAL opcode byte (protocol 5): it names no code at all
        return any(name in blob for name in self._encoded_names())

    def _encoded_names(self) -> tuple[bytes, ...]:
        names = self.names()
        if self._encoded[0] is not names:
            self._encoded = (names, tuple(n.encode() for n in names))
        return self._encoded[1]


class Packer:
    """Packs tasks for one master. Thread-safe; caches functions and scripts."""

    def __init__(self, staging_dir: str | None = None) -> None:
        self._lock = threading.Lock()
        self._functions: OrderedDict[Any, tuple] = OrderedDict()
        self._next_fn_id = 0
        self._scripts: dict[str, tuple[float, tuple, list]] = {}
        self.user_code = UserCode()
        self.snapshots = Snapshots(staging_dir)

    def close(self) -> None:
        """The master closed: its data file snapshots go."""
        self.snapshots.close()

    # -- pickling ------------------------------------------------------------

    def dumps_by_value(self, value: Any) -> bytes:
        """cloudpickle with the user's modules registered by value for this one call."""
        registered = []
        with _REGISTRY_LOCK:
            try:
                already = set(cloudpickle.list_registry_pickle_by_value())
                for name in self.user_code.names()[1:]:
                    module = sys.modules.get(name)
                    if module is not None and name not in already:
                        try:
                            cloudpickle.register_pickle_by_value(module)
                            registered.append(module)
                        except ValueError:
                            pass
                return cloudpickle.dumps(value, wire.PROTOCOL)
            finally:
                for module in registered:
                    cloudpickle.unregister_pickle_by_value(module)

    def dumps_data(self, value: Any, what: str) -> bytes | tuple:
        """Pickle task data: plain pickle when it can load anywhere, else by value.

        Big bytes in it are not copied into the pickle (:func:`pymw_core.wire.dumps`):
        bytes cannot change, so holding the caller's own objects until the task is sent
        is as good as a copy taken now.
        """
        try:
            blob = wire.dumps(value)
            if not self.user_code.mentioned_in(blob[0] if type(blob) is tuple else blob):
                return blob
        except Exception:
            pass
        try:
            return self.dumps_by_value(value)
        except Exception as exc:
            raise TaskError(f"{what} cannot be pickled: {type(exc).__name__}: {exc}") from exc

    def _function_code(self, fn: Callable) -> tuple:
        cacheable = type(fn) in _CACHEABLE
        key = id(fn)
        if cacheable:
            with self._lock:
                hit = self._functions.get(key)
                if hit is not None and hit[0] is fn:
                    self._functions.move_to_end(key)
                    return hit[1]
        texts = self._sources_of(fn)
        try:
            blob = self.dumps_by_value(_WithSources(fn, *texts) if texts else fn)
        except Exception as exc:
            raise TaskError(
                f"the function {getattr(fn, '__qualname__', fn)!r} cannot be pickled: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        with self._lock:
            self._next_fn_id += 1
            code = ("f", self._next_fn_id, blob)
            if cacheable:
                self._functions[key] = (fn, code)
                if len(self._functions) > _FUNCTION_CACHE_SIZE:
                    self._functions.popitem(last=False)
        return code

    def _sources_of(self, fn: Callable) -> tuple[dict, dict] | None:
        """What :mod:`pymw_core.sources` ships with ``fn`` (None: nothing to ship)."""
        user = self.user_code.names()
        found = sources.collect(fn, lambda module: module is None or module in user)
        return found if found[0] else None

    # -- scripts -------------------------------------------------------------

    def _script_code(self, path: str) -> tuple[tuple, list]:
        real = os.path.abspath(path)
        try:
            mtime = os.stat(real).st_mtime
            cached = self._scripts.get(real)
            if cached and cached[0] == mtime:
                return cached[1], cached[2]
            source = read_source(real, f"the script {path!r}")
        except OSError as exc:
            raise TaskError(f"cannot read the script {path!r}: {exc}") from exc
        try:
            tree = ast.parse(source, real)
        except SyntaxError as exc:
            raise TaskError(f"the script {path!r} is not valid Python: {exc}") from exc
        siblings = _sibling_modules(tree, os.path.dirname(real))
        code = ("s", os.path.basename(real), source)
        self._scripts[real] = (mtime, code, siblings)
        return code, siblings

    # -- the whole task ---------------------------------------------------------

    def pack(
        self,
        executable: Any,
        input_data: Any,
        modules: Iterable = (),
        dep_funcs: Iterable = (),
        data_files: Iterable = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Payload:
        """Check and pack one task; raise TaskError saying what is wrong and why.

        ``kwargs`` (keyword arguments of a function) travel beside the positional ones,
        so a call with keywords reuses the function's cached pickle.
        """
        shipped: list = []
        if callable(executable) and not isinstance(executable, str):
            code = self._function_code(executable)
            if type(input_data) is not tuple:
                input_data = _arguments(input_data)
            args = self.dumps_data(input_data, "input_data") if input_data else b""
        elif isinstance(executable, (str, os.PathLike)):
            path = os.fspath(executable)
            if not os.path.isfile(path):
                raise TaskError(
                    f"executable {path!r} is not an existing script file (a string executable "
                    "is the path of a Python script; pass a callable to run a function)"
                )
            code, shipped = self._script_code(path)
            args = self.dumps_data(input_data, "input_data")
        else:
            raise TaskError(
                "executable must be a callable or the path of a Python script, not "
                f"{type(executable).__name__} {executable!r}"
            )
        if not (shipped or modules or dep_funcs or data_files or kwargs):
            return Payload(code, args)
        extras = self._extras(shipped, modules, dep_funcs, data_files) or {}
        if kwargs:
            if code[0] != "f":
                raise TaskError("keyword arguments go to functions, not scripts")
            extras["kwargs"] = self.dumps_data(kwargs, "keyword arguments")
        return Payload(code, args, extras)

    def _extras(self, shipped: list, modules: Any, dep_funcs: Any, data_files: Any) -> dict | None:
        extras: dict = {}
        imports: list[str] = []
        for module in _as_tuple(modules, "modules"):
            name, sources = _module_sources(module)
            imports.append(name)  # every one is imported and bound on the worker, as in 0.4
            shipped = shipped + sources
        if shipped:
            extras["modules"] = shipped
        if imports:
            extras["imports"] = imports
        deps = _as_tuple(dep_funcs, "dep_funcs")
        if deps:
            for dep in deps:
                if not callable(dep) or not hasattr(dep, "__name__"):
                    raise TaskError(f"dep_funcs must hold named functions, not {dep!r}")
            extras["deps"] = self.dumps_data(deps, "dep_funcs")
        files = _data_files(_as_tuple(data_files, "data_files"), self.snapshots)
        if files:
            extras["files"] = files
        return extras or None


class _WithSources:
    """Pickles as a call to :func:`pymw_core.sources.restore`: the worker gets the
    function back, its source lines registered on the way."""

    __slots__ = ("codes", "files", "fn")

    def __init__(self, fn: Callable, files: dict, codes: dict) -> None:
        self.fn, self.files, self.codes = fn, files, codes

    def __reduce__(self) -> tuple:
        return sources.restore, (self.fn, self.files, self.codes)


def _arguments(input_data: Any) -> tuple:
    """A function's positional arguments from ``input_data`` (None, a tuple or a list)."""
    if input_data is None:
        return ()
    if isinstance(input_data, (tuple, list)):
        return tuple(input_data)
    raise TaskError(
        "input_data for a function is the tuple of its positional arguments, not "
        f"{type(input_data).__name__}: write ({input_data!r},) for one argument"
    )


def _as_tuple(value: Any, what: str) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (str, bytes, os.PathLike, types.ModuleType)) or callable(value):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise TaskError(f"{what} must be a sequence, not {type(value).__name__}") from None


def _data_files(paths: tuple, snapshots: Snapshots) -> list[tuple[str, str]]:
    """``(name, snapshot path)`` of each data file: read now, at submit (see staging)."""
    files, names = [], set()
    for entry in paths:
        if not isinstance(entry, (str, os.PathLike)):
            raise TaskError(f"data_files holds paths, not {type(entry).__name__} {entry!r}")
        path = os.path.abspath(os.fspath(entry))
        if not os.path.isfile(path):
            raise TaskError(f"data file {os.fspath(entry)!r} does not exist (or is not a file)")
        if not os.access(path, os.R_OK):
            raise TaskError(f"data file {os.fspath(entry)!r} is not readable")
        name = os.path.basename(path)
        if name in names:
            raise TaskError(f"two data files are named {name!r}; they would overwrite each other")
        names.add(name)
        files.append((name, path))
    return [(name, snapshots.take(path, name)) for name, path in files]


def _module_sources(module: Any) -> tuple[str, list[tuple[str, str, bool]]]:
    """A module in ``modules=``: its name, and ``[(name, source, is_package), ...]`` for
    it and its submodules when it travels by value (``[]`` when it goes by name).

    By name: the standard library, modules without Python source (built in, C
    extensions) and packages holding extension modules (their source alone would not
    import), which the worker imports itself (PyMW 0.4 made them importable there too).
    Everything else with source travels by value, so a worker needs no copy of the
    user's own modules.
    """
    if isinstance(module, str):
        try:
            module = importlib.import_module(module)
        except ImportError as exc:
            raise TaskError(f"module {module!r} in modules= cannot be imported: {exc}") from exc
    if not isinstance(module, types.ModuleType):
        raise TaskError(f"modules= holds module names or modules, not {module!r}")
    name = module.__name__
    top = name.partition(".")[0]
    path = getattr(module, "__file__", None)
    if (not path or not path.endswith(".py") or top in sys.builtin_module_names
            or top in getattr(sys, "stdlib_module_names", ())):
        return name, []
    if os.path.basename(path) != "__init__.py":
        return name, [(name, _read(path), False)]
    found = []
    root = os.path.dirname(path)
    for folder, _, names in os.walk(root):
        if any(n.endswith(ext) for n in names for ext in importlib.machinery.EXTENSION_SUFFIXES):
            return module.__name__, []
        rel = os.path.relpath(folder, root)
        prefix = module.__name__ if rel == "." else module.__name__ + "." + rel.replace(os.sep, ".")
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            full = os.path.join(folder, name)
            if name == "__init__.py":
                found.append((prefix, _read(full), True))
            elif os.path.isfile(os.path.join(folder, "__init__.py")):
                found.append((prefix + "." + name[:-3], _read(full), False))
    return module.__name__, found


def _read(path: str) -> str:
    return read_source(path, f"the module {path!r}")


def read_source(path: str, what: str) -> str:
    """A Python source file's text, decoded as Python decodes it: its PEP 263 coding
    line or UTF-8 byte order mark, else UTF-8. The text travels; the worker compiles a
    str, for which the coding line means nothing, so a latin-1 script runs there as here.

    Raises OSError when unreadable, TaskError when the bytes are not in the encoding the
    file declares (or names an encoding Python does not know).
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return importlib.util.decode_source(raw)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        raise TaskError(f"{what} cannot be decoded as Python source: {exc}") from exc


def _sibling_modules(tree: ast.AST, folder: str) -> list[tuple[str, str, bool]]:
    """Modules a script imports that sit beside it: they are the user's, so they travel."""
    wanted: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            wanted.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            wanted.add(node.module.split(".")[0])
    found = []
    for name in sorted(wanted):
        single = os.path.join(folder, name + ".py")
        if os.path.isfile(single):
            found.append((name, _read(single), False))
    return found


def request_file(
    payload: Payload, task_id: int, file_map: Callable[[str, str], str] | None = None
) -> bytes:
    """A self-contained request for ``python -m pymw_core.worker --file IN OUT``.

    Its first frame names the master's Python so a mismatched worker refuses in words.
    """
    import sys as _sys

    return wire.encode(("need", tuple(_sys.version_info[:2]))) + wire.encode(
        payload.message(task_id, send_code_blob=True, file_map=file_map)
    )
