"""PyMW's Slurm interface: tasks in job arrays whose elements claim them, many per job."""

from pymw_slurm.interface import SlurmInterface

__all__ = ["SlurmInterface"]
