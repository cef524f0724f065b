"""Source text that travels with a function shipped by value, so tracebacks show its lines.

cloudpickle names every code object it rebuilds ``<dynamic-code>``: a traceback through a
shipped function has a line number and nothing to show. The master (:func:`collect`,
once per function blob) sends the source lines of the function and of the user's
functions it calls, and which code came from which file; the worker
(:func:`restore`, run as the blob is unpickled) gives each code object its file name
back and registers the text in ``linecache``, as IPython does for its cells.
"""

from __future__ import annotations

import linecache
import types
from collections.abc import Callable
from typing import Any

LIMIT = 1 << 18  # characters of source text that may travel with one function
_FUNCTIONS = 200  # functions looked at per shipped function, at most


def collect(fn: Callable, is_user: Callable[[str | None], bool]) -> tuple[dict, dict]:
    """``(files, codes)`` for ``fn``: ``{file name: {line number: line}}`` (the lines of the
    user's functions it reaches through its globals, only those: an edit elsewhere in
    the file leaves the blob, and so the task's journal key, as it was) and
    ``{(name, first line): file name}``."""
    files: dict[str, dict[int, str]] = {}
    codes: dict[tuple[str, int], str] = {}
    room = LIMIT
    for function in _reachable(_unwrap(fn), is_user):
        for code in _code_tree(function.__code__):
            name = code.co_filename
            if name.startswith("<dyn"):
                continue
            lines = linecache.getlines(name)
            numbers = [n for _, _, n in code.co_lines() if n] + [code.co_firstlineno]
            kept = files.setdefault(name, {})
            for number in range(min(numbers), min(max(numbers), len(lines)) + 1):
                if number not in kept and room > 0:
                    kept[number] = lines[number - 1]
                    room -= len(kept[number])
            if kept:
                codes[(code.co_name, code.co_firstlineno)] = name
    return {n: lines for n, lines in files.items() if lines}, codes


def restore(fn: Any, files: dict[str, dict[int, str]],
            codes: dict[tuple[str, int], str]) -> Any:
    """The worker side: ``fn`` with its code's file names back and their lines in linecache."""
    for name, kept in files.items():
        entry = linecache.cache.get(name)
        # Lines of another function of the same file, shipped before, stay.
        lines = list(entry[2]) if entry is not None and entry[1] is None else []
        lines += ["\n"] * (max(kept) - len(lines))
        for number, line in kept.items():
            lines[number - 1] = line if line.endswith("\n") else line + "\n"
        linecache.cache[name] = (sum(map(len, lines)), None, lines, name)  # no mtime: kept
    for function in _reachable(_unwrap(fn), lambda module: True):
        if not function.__code__.co_filename.startswith("<dyn"):
            continue  # not rebuilt by cloudpickle: it has its own file
        try:
            function.__code__ = _renamed(function.__code__, codes)
        except (AttributeError, TypeError, ValueError):
            pass
    return fn


def _renamed(code: types.CodeType, codes: dict[tuple[str, int], str]) -> types.CodeType:
    consts = tuple(_renamed(c, codes) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    name = codes.get((code.co_name, code.co_firstlineno), code.co_filename)
    return code.replace(co_filename=name, co_consts=consts)


def _unwrap(fn: Any) -> Any:
    fn = getattr(fn, "__func__", fn)
    return getattr(fn, "func", fn)  # functools.partial


def _reachable(fn: Any, is_user: Callable[[str | None], bool]) -> list[types.FunctionType]:
    """``fn`` and the user's functions it names in its globals, and theirs, in turn."""
    found: list[types.FunctionType] = []
    seen: set[int] = set()
    stack = [fn]
    while stack and len(found) < _FUNCTIONS:
        function = stack.pop()
        if (not isinstance(function, types.FunctionType) or id(function) in seen
                or not is_user(function.__module__)):
            continue
        seen.add(id(function))
        found.append(function)
        names = {n for code in _code_tree(function.__code__) for n in code.co_names}
        globs = function.__globals__
        stack += [globs[n] for n in names if n in globs]
    return found


def _code_tree(code: types.CodeType) -> list[types.CodeType]:
    tree, stack = [], [code]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack += [c for c in current.co_consts if isinstance(c, types.CodeType)]
    return tree
