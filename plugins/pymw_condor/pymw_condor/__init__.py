"""PyMW's HTCondor interface: tasks as jobs of an HTCondor pool, many to a submit."""

from pymw_condor.errors import JobHeldError
from pymw_condor.interface import CondorInterface

__all__ = ["CondorInterface", "JobHeldError"]
