"""Observer plugins: watch tasks on any interface without touching the core.

Built in: ``"progress"`` (a tqdm bar) and ``"log"`` (task events to the ``pymw.tasks``
logger). Third parties register more in the entry-point group ``pymw.observers``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymw_core.errors import InterfaceError
from pymw_core.plugins import installed_observers

_BUILT_IN = {
    "progress": "pymw_core.observers.progress:ProgressBar",
    "log": "pymw_core.observers.logs:TaskLogger",
}


def _load(name: str) -> Any:
    if name in _BUILT_IN:
        module, _, attr = _BUILT_IN[name].partition(":")
        return getattr(__import__(module, fromlist=[attr]), attr)()
    available = installed_observers()
    if name not in available:
        names = ", ".join(sorted({*_BUILT_IN, *available}))
        raise InterfaceError(f"no PyMW observer named {name!r} (available: {names})")
    return available[name].load()()


def resolve_observers(items: Iterable[Any]) -> list[Any]:
    """Observer objects for ``items``: objects as given, names built from their plugin."""
    return [_load(item) if isinstance(item, str) else item for item in items]
