"""PyMW 0.4's names: a 0.4 program runs after its import lines change, and nothing else.

The rule: ``from pymw import X`` becomes ``from pymw_core.compat import X``. So
``from pymw_core.compat import *`` binds ``pymw`` (this module, standing in for 0.4's
``pymw.pymw``), ``from pymw_core.compat import pymw, interfaces`` works, and
``pymw.PyMW_Master(...)``, ``pymw.TaskException``, ``interfaces.generic.GenericInterface``,
``interfaces.parse_options`` and ``interfaces.get_interface`` are there. What still
differs from 0.4, and why: docs/coming-from-0.4.md.
"""

from __future__ import annotations

import sys

from pymw_core.compat import interfaces
from pymw_core.compat.mapreduce import PyMW_MapReduce
from pymw_core.compat.master import PyMW_Master, PyMW_Task
from pymw_core.errors import InterfaceError, TaskError

TaskException = TaskError  # the same classes: `except TaskException` catches PyMW's errors
InterfaceException = InterfaceError

pymw = sys.modules[__name__]  # 0.4's `pymw.pymw` module held these names; this one does

__all__ = [
    "InterfaceException",
    "PyMW_MapReduce",
    "PyMW_Master",
    "PyMW_Task",
    "TaskException",
    "interfaces",
    "pymw",
]
