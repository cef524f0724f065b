"""Finding interfaces by name and turning a plain class into pluggy hook implementations."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from pymw_core import hookspecs
from pymw_core.errors import ConfigurationError, InterfaceError

ENTRY_POINT_GROUP = "pymw.interfaces"
OBSERVER_GROUP = "pymw.observers"
_SPEC_NAMES = frozenset(hookspecs.INTERFACE_HOOKS + hookspecs.OBSERVER_HOOKS)


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that takes a method named like a hook as its implementation.

    pytest does the same for its ``pytest_`` functions; it is what lets an interface
    be a plain class with no PyMW import.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)

    def parse_hookimpl_opts(self, plugin: Any, name: str):
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None or name not in _SPEC_NAMES:
            return opts
        if inspect.isroutine(getattr(plugin, name, None)):
            return {}
        return None


def make_manager(interface: Any, observers: tuple = ()) -> PluginManager:
    """Register ``interface`` (and observers) on a fresh manager, refusing what cannot work."""
    if not callable(getattr(interface, "execute_task", None)):
        raise InterfaceError(
            f"{type(interface).__qualname__} is not a PyMW interface: it has no "
            "execute_task(task, worker) method, the one hook every interface must implement"
        )
    manager = PluginManager()
    for plugin in (interface, *observers):
        try:
            manager.register(plugin)
        except pluggy.PluginValidationError as exc:
            raise InterfaceError(f"{type(plugin).__qualname__} cannot be used: {exc}") from exc
    return manager


def direct_call(hook: Any) -> Callable[..., Any]:
    """The hook's one implementation as a plain function, else the hook itself.

    Per-task hooks are called several times per task; skipping pluggy's call loop when
    exactly one plain implementation exists (the interface's) keeps that cheap, with
    the same keyword-argument calling convention.
    """
    impls = hook.get_hookimpls()
    if len(impls) == 1 and not (impls[0].hookwrapper or getattr(impls[0], "wrapper", False)):
        return impls[0].function
    return hook


def installed_interfaces() -> dict[str, EntryPoint]:
    """Every interface installed in this environment, by the name users write.

    Public API (also ``pymw_core.installed_interfaces``): ``.load()`` on a value gives
    the class or factory its ``pymw.interfaces`` entry point names.
    """
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def installed_observers() -> dict[str, EntryPoint]:
    """Observer plugins installed in this environment, by name."""
    return {ep.name: ep for ep in entry_points(group=OBSERVER_GROUP)}


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def how_to_choose(names: list[str]) -> str:
    """One sentence saying how a program picks one of the installed interfaces."""
    pick = names[0] if names else "NAME"
    return (
        f"choose one with Master({pick!r}), PYMW_INTERFACE={pick}, or interface = \"{pick}\" "
        "in pymw.toml"
    )


# PyMW's own interfaces and the distributions they come in: a missing one is one pip away.
OUR_DISTRIBUTIONS = {name: f"pymw-{name}" for name in ("local", "ssh", "condor", "slurm", "mpi")}


def load_factory(name: str, chosen: bool = True) -> Callable[..., Any]:
    """The class (or factory) an interface's entry point names.

    ``chosen=False`` says nobody named the interface (the default applies), which
    changes the advice when it is missing.
    """
    available = installed_interfaces()
    if name not in available:
        names = sorted(available)
        listed = ", ".join(names) if names else "none"
        if not chosen:
            install = "" if names else "; pip install pymw-local for the default"
            raise ConfigurationError(
                f"no interface was chosen and the default, {name!r}, is not installed "
                f"(installed: {listed}){install}; {how_to_choose(names)}"
            )
        if name in OUR_DISTRIBUTIONS:
            dist = OUR_DISTRIBUTIONS[name]
            raise ConfigurationError(
                f"no PyMW interface named {name!r} is installed (installed: {listed}); "
                f"it is PyMW's own, in the {dist} distribution: pip install {dist}"
            )
        raise ConfigurationError(
            f"no PyMW interface named {name!r} is installed (installed: {listed})."
            f"{_suggest(name, names)}"
        )
    try:
        return available[name].load()
    except Exception as exc:
        raise InterfaceError(
            f"the interface {name!r} is installed but failed to load "
            f"({available[name].value}): {type(exc).__name__}: {exc}"
        ) from exc


def check_options(name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    """Refuse options the interface does not take, and required ones that are missing."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    named = [
        p for p in params.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    ]
    missing = [p.name for p in named if p.default is p.empty and p.name not in options]
    if missing:
        first = missing[0]
        raise ConfigurationError(
            f"the {name!r} interface needs the option {first!r}: pass it as "
            f"Master({name!r}, {first}=...) or set {first} under [{name}] in pymw.toml"
        )
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [p.name for p in named]
    for option in options:
        if option not in valid:
            listed = ", ".join(valid) if valid else "none"
            raise ConfigurationError(
                f"the {name!r} interface has no option {option!r} (its options: {listed})."
                f"{_suggest(option, valid)}"
            )


def create_interface(name: str, options: dict[str, Any], chosen: bool = True) -> Any:
    """Build the interface registered as ``name`` with ``options`` as keyword arguments."""
    factory = load_factory(name, chosen)
    check_options(name, factory, options)
    try:
        return factory(**options)
    except InterfaceError:
        raise
    except Exception as exc:
        raise InterfaceError(
            f"the {name!r} interface could not start: {type(exc).__name__}: {exc}"
        ) from exc
