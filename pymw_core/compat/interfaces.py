"""PyMW 0.4's ``pymw.interfaces``: its interface classes and command-line helpers.

Each 0.4 class builds the PyMW 0.5 interface that does its job: ``generic`` and
``multicore`` are ``local``, ``mpi`` is ``mpi``, ``condor`` is ``condor``. 0.4's
``boinc``, ``ganga`` and ``grid_simulator`` have no counterpart; reaching for them
raises an error saying so.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import sys
import types
from optparse import OptionParser, Values
from typing import Any

from pymw_core import config, plugins
from pymw_core.errors import InterfaceError

log = logging.getLogger("pymw")

# 0.4's interface names and the PyMW 0.5 interfaces that replace them.
REPLACED_BY = {"generic": "local", "multicore": "local", "mpi": "mpi", "condor": "condor"}
NOT_AVAILABLE = ("boinc", "ganga", "grid_simulator")


class MissingInterfaceError(InterfaceError, AttributeError):
    """A PyMW 0.4 interface with no PyMW 0.5 counterpart (also an AttributeError, so
    ``hasattr(interfaces, "boinc")`` is simply False)."""


def _missing(name: str) -> MissingInterfaceError:
    installed = ", ".join(sorted(plugins.installed_interfaces())) or "none"
    return MissingInterfaceError(
        f"PyMW 0.4's {name!r} interface does not exist in PyMW 0.5; 0.4's generic, "
        f"multicore, mpi and condor do (installed PyMW 0.5 interfaces: {installed})"
    )


def _build(name: str, **options: Any) -> Any:
    """The installed interface ``name``, with the config file's options under ``options``."""
    choice = config.resolve(name, {k: v for k, v in options.items() if v is not None})
    return plugins.create_interface(choice.name, choice.options, choice.chosen)


def _family(name: str, doc: str, **classes: Any) -> types.ModuleType:
    module = types.ModuleType(f"{__name__}.{name}", doc)
    module.__dict__.update(classes)
    return module


class _CannotStart:
    """What 0.4 did with an interpreter that cannot be started: each task fails with the
    reason, raised by ``get_result`` (PyMW 0.5's ``local`` refuses it in ``Master()``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def execute_task(self, task: Any, worker: Any) -> None:
        raise InterfaceError(self.reason)


def _local(num_workers: int, python_loc: str | None) -> Any:
    if python_loc and shutil.which(python_loc) is None:
        return _CannotStart(f"the worker interpreter {python_loc!r} cannot be started: "
                            "no such file, or not executable")
    return _build("local", num_workers=num_workers, python=python_loc or None)


def GenericInterface(num_workers: int = 1, python_loc: str | None = None) -> Any:
    """0.4's generic interface: the ``local`` interface with ``num_workers`` processes,
    run by ``python_loc`` (default: this interpreter). A ``python_loc`` that cannot
    run workers fails the tasks, raised by ``get_result``, as in 0.4."""
    return _local(num_workers, python_loc)


def MulticoreInterface(num_workers: int = 1, python_loc: str | None = None) -> Any:
    """0.4's multicore interface: the same ``local`` interface as ``GenericInterface``."""
    return _local(num_workers, python_loc)


def MPIInterface(num_workers: int = 1) -> Any:
    """0.4's MPI interface: the ``mpi`` interface (pymw-mpi) with ``num_workers`` ranks."""
    return _build("mpi", num_workers=num_workers)


def CondorInterface(python_loc: str = "", condor_submit_loc: str = "") -> Any:
    """0.4's Condor interface: the ``condor`` interface (pymw-condor). ``python_loc`` is
    its ``python``; ``condor_submit_loc`` is not used (it submits through HTCondor's
    Python bindings, not the ``condor_submit`` program)."""
    if condor_submit_loc:
        log.warning("condor_submit_loc=%r is ignored: the condor interface submits through "
                    "HTCondor's Python bindings", condor_submit_loc)
    return _build("condor", python=python_loc or None)


generic = _family("generic", "0.4's generic interface.", GenericInterface=GenericInterface)
multicore = _family("multicore", "0.4's multicore interface.",
                    MulticoreInterface=MulticoreInterface)
mpi = _family("mpi", "0.4's MPI interface.", MPIInterface=MPIInterface)
condor = _family("condor", "0.4's Condor interface.", CondorInterface=CondorInterface)


def __getattr__(name: str) -> Any:
    if name in NOT_AVAILABLE:
        raise _missing(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_options(parser: OptionParser | None = None,
                  args: list[str] | None = None) -> tuple[Values, list[str]]:
    """Add PyMW 0.4's options to ``parser`` (a new one if None) and parse ``args``
    (default: the command line). Returns ``(options, args)``.

    ``-i/--interface`` (default ``generic``) and ``-n/--num_workers`` (default 4) choose
    the interface for :func:`get_interface`; 0.4's BOINC and Ganga options are accepted
    so command lines written for 0.4 still parse.
    """
    parser = parser or OptionParser(usage="usage: %prog")
    parser.add_option("-i", "--interface", dest="interface", default="generic",
                      metavar="INTERFACE",
                      help="interface: generic, multicore, mpi, condor (PyMW 0.4's names) "
                           "or an installed PyMW 0.5 interface")
    parser.add_option("-n", "--num_workers", dest="n_workers", default="4", metavar="N",
                      help="number of workers")
    parser.add_option("-g", "--ganga_loc", dest="g_loc", default="~/Ganga/bin/ganga",
                      metavar="FILE", help="GANGA executable (0.4's ganga; not in PyMW 0.5)")
    parser.add_option("-p", "--project_home", dest="p_home", default="", metavar="DIR",
                      help="project directory (0.4's boinc; not in PyMW 0.5)")
    parser.add_option("-c", "--app_path", dest="custom_app_dir", default="", metavar="DIR",
                      help="custom worker application (0.4's boinc; not in PyMW 0.5)")
    parser.add_option("-a", "--app_args", dest="custom_app_args", default="", metavar="ARGS",
                      help="custom worker arguments (0.4's boinc; not in PyMW 0.5)")
    return parser.parse_args(sys.argv[1:] if args is None else args)


def get_interface(options: Values) -> Any:
    """The interface ``options`` (from :func:`parse_options`) ask for, with
    ``n_workers`` workers where the interface has a number of workers."""
    name = options.interface
    try:
        workers = int(options.n_workers)
    except (TypeError, ValueError):
        raise InterfaceError(
            f"-n/--num_workers must be a whole number, not {options.n_workers!r}") from None
    if name in ("generic", "multicore"):
        return GenericInterface(num_workers=workers)
    if name == "mpi":
        return MPIInterface(num_workers=workers)
    if name == "condor":
        return CondorInterface()
    if name in NOT_AVAILABLE:
        raise _missing(name)
    # Not a 0.4 name: an installed PyMW 0.5 interface (it reports an unknown name itself).
    factory = plugins.load_factory(name)
    takes_workers = "num_workers" in inspect.signature(factory).parameters
    return _build(name, num_workers=workers if takes_workers else None)
