"""PyMW: master-worker computing that scales from a laptop to SSH hosts and HTCondor.

    from pymw_core import Master
    with Master() as master:                    # "local"; or "ssh", "condor", ...
        task = master.submit_task(pow, (2, 10))
        print(master.get_result(task))          # (task, 1024)
"""

from pymw_core.compat import (
    InterfaceException,
    PyMW_MapReduce,
    PyMW_Master,
    PyMW_Task,
    TaskException,
)
from pymw_core.errors import (
    ConfigurationError,
    InterfaceError,
    InvalidValueError,
    JournalError,
    MasterClosedError,
    PyMWError,
    RemoteTraceback,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
    WorkerLostError,
)
from pymw_core.executor import PyMWExecutor
from pymw_core.hookspecs import hookimpl
from pymw_core.master import Master
from pymw_core.plugins import installed_interfaces
from pymw_core.task import Task

__version__ = "0.5.0"

__all__ = [
    "ConfigurationError",
    "InterfaceError",
    "InterfaceException",
    "InvalidValueError",
    "JournalError",
    "Master",
    "MasterClosedError",
    "PyMWError",
    "PyMWExecutor",
    "PyMW_MapReduce",
    "PyMW_Master",
    "PyMW_Task",
    "RemoteTraceback",
    "Task",
    "TaskCancelledError",
    "TaskError",
    "TaskException",
    "TaskTimeoutError",
    "WorkerLostError",
    "__version__",
    "hookimpl",
    "installed_interfaces",
]
