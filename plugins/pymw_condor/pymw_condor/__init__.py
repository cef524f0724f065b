"""PyMW's HTCondor interface: tasks as jobs of an HTCondor pool, many to a submit."""

from pymw_condor.errors import JobHeldError
from pymw_condor.interface import CondorInterface

__version__ = "0.5.0"  # released together with pymw-core

__all__ = ["CondorInterface", "JobHeldError", "__version__"]
